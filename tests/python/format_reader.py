#!/usr/bin/env python3
"""Independent reader of cvrl shard sets, written from FORMAT.md (and its §3.2 chunk
payload text) alone, to show that the specification is complete.

    format_reader.py SET_DIR VIDEO_ID START COUNT OUT_FILE

Writes frames START..START+COUNT (stride 1) of VIDEO_ID as raw planes (FORMAT.md §3.1) to
OUT_FILE. Exits with status 1 and a message on stderr when anything fails validation.

Needs only Python 3.11, numpy, zstandard and pyarrow.
"""

from __future__ import annotations

import json
import os
import struct
import sys

import numpy as np
import pyarrow.parquet as pq
import zstandard


class FormatError(Exception):
    """The set, a shard or a chunk does not follow the specification."""


def fail(msg: str) -> None:
    raise FormatError(msg)


# ---------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 (= bit-reversed 0x1EDC6F41).
# Slicing-by-8 over numpy-built tables; the inner loop is plain Python.

def _crc_tables() -> list[list[int]]:
    t0 = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t0.append(c)
    tables = [t0]
    for _ in range(7):
        prev = tables[-1]
        tables.append([(prev[n] >> 8) ^ t0[prev[n] & 0xFF] for n in range(256)])
    return tables


_T = _crc_tables()


def crc32c(data: bytes | memoryview) -> int:
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    crc = 0xFFFFFFFF
    mv = memoryview(data).cast("B")
    n8 = len(mv) // 8
    if n8:
        words = struct.unpack_from(f"<{2 * n8}I", mv)
        for i in range(0, 2 * n8, 2):
            lo = words[i] ^ crc
            hi = words[i + 1]
            crc = (t7[lo & 0xFF] ^ t6[(lo >> 8) & 0xFF] ^ t5[(lo >> 16) & 0xFF] ^ t4[lo >> 24]
                   ^ t3[hi & 0xFF] ^ t2[(hi >> 8) & 0xFF] ^ t1[(hi >> 16) & 0xFF] ^ t0[hi >> 24])
    for b in mv[8 * n8:]:
        crc = (crc >> 8) ^ t0[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC-32C self-test"


# ---------------------------------------------------------------------------------------
# Set, index, shard file header, record header (FORMAT.md §1-§5).

PIXEL_FORMATS = {1: "yuv420p", 2: "rgb24"}
CODEC_PREDICTIVE_ZSTD = 1
CODEC_PLAIN_ZSTD = 2
CODEC_INTERLEAVED = 3
U64_MAX = (1 << 64) - 1


def checked_add(*xs: int) -> int:
    """Sum of u64 values; fails on overflow (FORMAT.md §3: arithmetic MUST be checked)."""
    s = 0
    for x in xs:
        s += x
        if s > U64_MAX:
            fail("arithmetic overflow in record fields")
    return s


def pad8(n: int) -> int:
    return (n + 7) // 8 * 8


def load_manifest(set_dir: str) -> dict:
    path = os.path.join(set_dir, "manifest.json")
    if not os.path.isfile(path):
        fail(f"{set_dir}: no manifest.json: not a complete shard set")
    with open(path, "rb") as f:
        try:
            m = json.load(f)
        except json.JSONDecodeError as e:
            fail(f"{path}: not JSON: {e}")
    if m.get("format") != "cvrl-shards":
        fail(f"{path}: format {m.get('format')!r}, expected 'cvrl-shards'")
    if m.get("format_version") != 1:
        fail(f"{path}: format_version {m.get('format_version')!r}, expected 1")
    if not isinstance(m.get("classes"), list):
        fail(f"{path}: no class list")
    return m


def plain_file_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        fail(f"{what} {name!r} is not a plain file name")
    return name


def load_index(set_dir: str, manifest: dict) -> list[dict]:
    name = plain_file_name(manifest.get("index", "index.parquet"), "index")
    rows = pq.read_table(os.path.join(set_dir, name)).to_pylist()
    ids = [r["video_id"] for r in rows]
    if len(set(ids)) != len(ids):
        fail(f"{name}: video ids are not unique")
    return rows


def check_file_header(shard_path: str, data: bytes) -> None:
    if len(data) < 32:
        fail(f"{shard_path}: {len(data)} bytes, shorter than the 32-byte file header")
    magic, version, hsize = data[:8], *struct.unpack_from("<II", data, 8)
    if magic != b"CVRLSHRD":
        fail(f"{shard_path}: bad file magic {magic!r}")
    if version != 1:
        fail(f"{shard_path}: format version {version}, expected 1")
    if hsize != 32:
        fail(f"{shard_path}: header size {hsize}, expected 32")
    (crc,) = struct.unpack_from("<I", data, 28)
    if crc32c(data[:28]) != crc:
        fail(f"{shard_path}: file header checksum (CRC-32C) mismatch")
    if data[16:28] != bytes(12):
        fail(f"{shard_path}: reserved header bytes are not zero")


def parse_record(shard_path: str, data: bytes, offset: int) -> dict:
    """Parses and validates the video record at `offset` (FORMAT.md §3)."""
    where = f"{shard_path} @ {offset}"
    if offset % 8 != 0 or offset < 32:
        fail(f"{where}: record offset must be a multiple of 8 and at least 32")
    if checked_add(offset, 48) > len(data):
        fail(f"{where}: record header lies outside the file")
    if data[offset:offset + 8] != b"CVRLVID1":
        fail(f"{where}: bad record magic {data[offset:offset + 8]!r}")
    (record_len, width, height, num_frames, num_chunks, fps_num, fps_den, pix, codec, id_len,
     header_len) = struct.unpack_from("<QIIIIIIBBHI", data, offset + 8)
    expect_hl = checked_add(48, pad8(id_len), 24 * num_chunks, 8)
    if header_len != expect_hl:
        fail(f"{where}: header_len {header_len}, formula gives {expect_hl}")
    if checked_add(offset, header_len) > len(data):
        fail(f"{where}: record header lies outside the file")
    hdr = data[offset:offset + header_len]
    (hcrc,) = struct.unpack_from("<I", hdr, header_len - 8)
    if crc32c(hdr[:header_len - 8]) != hcrc:
        fail(f"{where}: record header checksum (CRC-32C) mismatch")
    if hdr[header_len - 4:header_len] != bytes(4):
        fail(f"{where}: the 4 bytes after the header CRC are not zero")
    if pix not in PIXEL_FORMATS:
        fail(f"{where}: unknown pixel format {pix}")
    if codec not in (CODEC_PREDICTIVE_ZSTD, CODEC_PLAIN_ZSTD, CODEC_INTERLEAVED):
        fail(f"{where}: unknown codec {codec}")
    pixel_format = PIXEL_FORMATS[pix]
    if not (1 <= width <= 8192 and 1 <= height <= 8192):
        fail(f"{where}: size {width}x{height} out of range")
    if pixel_format == "yuv420p" and (width % 2 or height % 2):
        fail(f"{where}: yuv420p size {width}x{height} is not even")
    if fps_num == 0 or fps_den == 0:
        fail(f"{where}: frame rate {fps_num}/{fps_den}")
    if num_frames < 1:
        fail(f"{where}: no frames")
    if checked_add(offset, record_len) > len(data):
        fail(f"{where}: record ({record_len} bytes) lies outside the file")
    raw_id = hdr[48:48 + id_len]
    if hdr[48 + id_len:48 + pad8(id_len)] != bytes(pad8(id_len) - id_len):
        fail(f"{where}: video id padding is not zero")
    try:
        video_id = raw_id.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{where}: video id is not UTF-8")
    chunks = []
    pos = 48 + pad8(id_len)
    next_off, next_frame = header_len, 0
    for i in range(num_chunks):
        c_off, c_len, c_first, c_n, c_crc = struct.unpack_from("<QIIII", hdr, pos + 24 * i)
        if c_off != next_off:
            fail(f"{where}: chunk {i} starts at {c_off}, expected {next_off}: chunks do not tile the record")
        if c_first != next_frame or c_n < 1:
            fail(f"{where}: chunk {i} holds frames {c_first}+{c_n}, expected to start at {next_frame}")
        next_off = checked_add(c_off, c_len)
        next_frame = checked_add(c_first, c_n)
        chunks.append({"offset": c_off, "length": c_len, "first_frame": c_first, "num_frames": c_n, "crc32c": c_crc})
    if next_off != record_len:
        fail(f"{where}: chunks end at {next_off}, record_len is {record_len}")
    if next_frame != num_frames:
        fail(f"{where}: chunks hold {next_frame} frames, num_frames is {num_frames}")
    return {
        "video_id": video_id, "record_len": record_len, "width": width, "height": height,
        "num_frames": num_frames, "fps_num": fps_num, "fps_den": fps_den,
        "pixel_format": pixel_format, "header_len": header_len, "chunks": chunks,
        "codec": codec,
    }


def check_row_against_record(row: dict, rec: dict, manifest: dict, shard_len: int) -> None:
    vid = row["video_id"]
    if row["offset"] % 8 or row["offset"] < 32 or checked_add(row["offset"], row["length"]) > shard_len:
        fail(f"{vid}: index row's record range {row['offset']}+{row['length']} is not inside {row['shard']}")
    li = row.get("label_index")
    if li is not None and not (0 <= li < len(manifest["classes"])):
        fail(f"{vid}: label_index {li} does not index the {len(manifest['classes'])} classes")
    for k in ("num_frames", "width", "height", "fps_num", "fps_den", "pixel_format", "video_id"):
        if row[k] != rec[k]:
            fail(f"{vid}: index says {k} = {row[k]!r}, the record says {rec[k]!r}")
    if row["length"] != rec["record_len"]:
        fail(f"{vid}: index length {row['length']} != record_len {rec['record_len']}")
    if list(row["chunks"]) != rec["chunks"]:
        fail(f"{vid}: the index's chunk table differs from the record's")


# ---------------------------------------------------------------------------------------
# Chunk payload (FORMAT.md §3.2).

RAW, TEMPORAL, MED, TEMPORAL_MED, MOTION, MOTION_MED = range(6)
K_THRESH = np.array([0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 28, 40])
O_THRESH = np.array([1, 2, 4, 7, 12, 20])
M_THRESH = np.array([4, 10, 25])
STREAM_NAMES = ([f"Z{i}" for i in range(9)] + [f"O{i}" for i in range(7)] + [f"S{i}" for i in range(9)]
                + [f"M{i}" for i in range(4)] + [f"L{i}" for i in range(4)])


def count_below(t: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """count(t, T): how many thresholds are below t (T sorted ascending)."""
    return np.searchsorted(thresholds, t, side="left")


def plane_shapes(width: int, height: int, pixel_format: str) -> list[tuple[int, int, int, int]]:
    """(W bytes per row, H rows, S, block size in pixels) per plane."""
    if pixel_format == "yuv420p":
        return [(width, height, 1, 16), (width // 2, height // 2, 1, 8), (width // 2, height // 2, 1, 8)]
    return [(3 * width, height, 3, 16)]


class BitStream:
    def __init__(self, name: str, data: bytes):
        self.name = name
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        self.nbytes = len(data)
        self.pos = 0

    def read(self, n: int) -> np.ndarray:
        if self.pos + n > len(self.bits):
            fail(f"stream {self.name} read past its end")
        out = self.bits[self.pos:self.pos + n]
        self.pos += n
        return out

    def finish(self) -> None:
        if (self.pos + 7) // 8 != self.nbytes:
            fail(f"stream {self.name} not read to its end ({self.pos} bits of {self.nbytes} bytes used)")
        if self.bits[self.pos:].any():
            fail(f"stream {self.name}: non-zero padding bits")


class ByteStream:
    def __init__(self, name: str, data: bytes):
        self.name = name
        self.data = np.frombuffer(data, dtype=np.uint8)
        self.pos = 0

    def read(self, n: int) -> np.ndarray:
        if self.pos + n > len(self.data):
            fail(f"stream {self.name} read past its end")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def finish(self) -> None:
        if self.pos != len(self.data):
            fail(f"stream {self.name} not read to its end ({self.pos} of {len(self.data)} bytes used)")


def group_contexts(above: np.ndarray, W: int) -> np.ndarray:
    """Each group's context from the row above ("Residual streams"): count(g, K) with g =
    sum |v[y-1][i]|, i in x0-1..=x0+8; `above` is |v[y-1]|."""
    x0s = np.arange(0, W, 8)
    cs = np.concatenate(([0], np.cumsum(above)))
    g = cs[np.minimum(x0s + 9, W)] - cs[np.maximum(x0s - 1, 0)]
    return count_below(g, K_THRESH)


def decode_residual_plane(W: int, H: int, S: int, Z, O, SG, M, L) -> np.ndarray:
    """Reads one plane of residual bytes from the streams ("Residual streams")."""
    res = np.zeros((H, W), dtype=np.uint8)
    above = np.zeros(W, dtype=np.int64)      # |v[y-1][x]|
    above_sgn = np.ones(W, dtype=np.int64)   # sgn(v[y-1][x]): 0 neg, 1 zero, 2 pos
    cols = np.arange(W)
    group_of = cols // 8
    for y in range(H):
        k = group_contexts(above, W)
        kpix = k[group_of]
        row = np.zeros(W, dtype=np.uint8)
        nonzero = np.zeros(W, dtype=bool)
        for kk in np.unique(kpix):
            where = np.nonzero(kpix == kk)[0]
            if kk >= 9:
                row[where] = L[kk - 9].read(len(where))
                nonzero[where] = row[where] != 0
            else:
                nonzero[where] = Z[kk].read(len(where)).astype(bool)
        coded = nonzero & (kpix < 9)
        xs = np.nonzero(coded)[0]
        if len(xs):
            def ab(arr, xx, fill):
                ok = (xx >= 0) & (xx < W)
                return np.where(ok, arr[np.clip(xx, 0, W - 1)], fill)
            left_nz = ab(nonzero, xs - S, False)
            s = (2 * left_nz + above[xs] + ab(above, xs - S, 0) + ab(above, xs + S, 0))
            o_ctx = count_below(s, O_THRESH)
            s_ctx = 3 * above_sgn[xs] + ab(above_sgn, xs - S, 1)
            m_ctx = count_below(s, M_THRESH)
            big = np.zeros(len(xs), dtype=bool)
            neg = np.zeros(len(xs), dtype=bool)
            for c in np.unique(o_ctx):
                sel = o_ctx == c
                big[sel] = O[c].read(int(sel.sum())).astype(bool)
            for c in np.unique(s_ctx):
                sel = s_ctx == c
                neg[sel] = SG[c].read(int(sel.sum())).astype(bool)
            mag = np.ones(len(xs), dtype=np.int64)
            for c in np.unique(m_ctx[big]):
                sel = big & (m_ctx == c)
                mag[sel] = M[c].read(int(sel.sum())).astype(np.int64) + 2
            if (mag[~neg] > 127).any() or (mag[neg] > 128).any():
                fail("out-of-range residual magnitude")
            row[xs] = np.where(neg, (256 - mag) & 0xFF, mag).astype(np.uint8)
        res[y] = row
        sv = row.view(np.int8).astype(np.int64)
        above = np.abs(sv)
        above_sgn = np.sign(sv) + 1
    return res


def spatial_wavefronts(W: int, H: int, S: int):
    """Pixel indices grouped by d = y + x // S: all of one group depend only on earlier ones."""
    ys, xs = np.divmod(np.arange(W * H), W)
    d = ys + xs // S
    order = np.argsort(d, kind="stable")
    bounds = np.searchsorted(d[order], np.arange(d.max() + 2))
    return order, bounds, ys, xs


def reconstruct_plane(res: np.ndarray, codes: np.ndarray, block_w: int, block_h: int, S: int,
                      prev: np.ndarray | None, mv: tuple[int, int]) -> np.ndarray:
    """Undoes the per-block prediction ("Predictors") of one plane."""
    H, W = res.shape
    bys, bxs = -(-H // block_h), -(-W // block_w)
    code = np.repeat(np.repeat(codes.reshape(bys, bxs), block_h, axis=0), block_w, axis=1)[:H, :W]
    r = res.astype(np.int64)
    zeros = np.zeros((H, W), dtype=np.int64)
    if prev is None:
        prev_i = R = zeros
    else:
        prev_i = prev.astype(np.int64)
        dx, dy = mv
        yy = np.clip(np.arange(H) + dy, 0, H - 1)
        xx = np.arange(W)
        xx = np.clip(xx // S + dx, 0, W // S - 1) * S + xx % S
        R = prev_i[yy][:, xx]
    # base plane per pixel (0, prev or R) and whether sp() of X - base is added.
    base_kind = np.select([np.isin(code, (TEMPORAL, TEMPORAL_MED)), np.isin(code, (MOTION, MOTION_MED))], [1, 2], 0)
    use_sp = np.isin(code, (MED, TEMPORAL_MED, MOTION_MED))
    bases = np.stack([zeros, prev_i, R]).reshape(3, -1)
    bk = base_kind.reshape(-1)
    flat_base = bases[bk, np.arange(W * H)]
    X = ((r.reshape(-1) + flat_base) & 0xFF)  # final for pixels without sp
    if use_sp.any():
        order, bounds, ys, xs = spatial_wavefronts(W, H, S)
        spf = use_sp.reshape(-1)
        rf = r.reshape(-1)
        for i in range(len(bounds) - 1):
            idx = order[bounds[i]:bounds[i + 1]]
            idx = idx[spf[idx]]
            if len(idx) == 0:
                continue
            y, x, kind = ys[idx], xs[idx], bk[idx]
            has_a, has_b = x >= S, y > 0
            ia = np.where(has_a, idx - S, idx)
            ib = np.where(has_b, idx - W, idx)
            ic = np.where(has_a & has_b, idx - W - S, idx)
            a = X[ia] - bases[kind, ia]
            b = X[ib] - bases[kind, ib]
            c = X[ic] - bases[kind, ic]
            mn, mx = np.minimum(a, b), np.maximum(a, b)
            med = np.clip(a + b - c, mn, mx)
            sp = np.where(has_a & has_b, med, np.where(has_b, b, np.where(has_a, a, 0)))
            X[idx] = (rf[idx] + flat_base[idx] + sp) & 0xFF
    return X.reshape(H, W).astype(np.uint8)


def decode_payload(payload: bytes, n_frames: int, shapes) -> list[list[np.ndarray]]:
    P = len(shapes)
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(payload):
            fail("payload shorter than its parts")
        out = payload[pos:pos + n]
        pos += n
        return out

    mvs = np.frombuffer(take(2 * n_frames * P), dtype=np.int8).astype(np.int64).reshape(n_frames, P, 2)
    if mvs[0].any():
        fail("non-zero motion vector in frame 0 of a chunk")
    block_dims = []
    codes = []
    for f in range(n_frames):
        fc = []
        for (W, H, S, bs) in shapes:
            bw, bh = bs * S, bs
            n = (-(-W // bw)) * (-(-H // bh))
            c = np.frombuffer(take(n), dtype=np.uint8)
            if (c > 5).any():
                fail(f"unknown predictor code {int(c.max())}")
            if f == 0 and np.isin(c, (TEMPORAL, TEMPORAL_MED, MOTION, MOTION_MED)).any():
                fail("temporal predictor code in frame 0 of a chunk")
            fc.append(c)
            if f == 0:
                block_dims.append((bw, bh))
        codes.append(fc)
    lengths = struct.unpack("<33I", take(132))
    if pos + sum(lengths) != len(payload):
        fail(f"payload is {len(payload)} bytes, its parts sum to {pos + sum(lengths)}")
    streams = []
    for name, n in zip(STREAM_NAMES, lengths):
        data = take(n)
        streams.append(BitStream(name, data) if name[0] in "ZOS" else ByteStream(name, data))
    Z, O, SG, M, L = streams[0:9], streams[9:16], streams[16:25], streams[25:29], streams[29:33]

    frames = []
    prev_planes = None
    for f in range(n_frames):
        planes = []
        for p, (W, H, S, _bs) in enumerate(shapes):
            res = decode_residual_plane(W, H, S, Z, O, SG, M, L)
            bw, bh = block_dims[p]
            prev = prev_planes[p] if prev_planes is not None else None
            planes.append(reconstruct_plane(res, codes[f][p], bw, bh, S, prev, (int(mvs[f, p, 0]), int(mvs[f, p, 1]))))
        frames.append(planes)
        prev_planes = planes
    for s in streams:
        s.finish()
    return frames


def decode_sparse_plane(W: int, H: int, Z, N, L) -> np.ndarray:
    """One plane of a codec 3 frame's residual bytes from its streams (FORMAT.md §3.4)."""
    res = np.zeros((H, W), dtype=np.uint8)
    above = np.zeros(W, dtype=np.int64)  # |v[y-1][x]|
    for y in range(H):
        for x0, k in zip(range(0, W, 8), group_contexts(above, W)):
            n = min(8, W - x0)
            if k >= 9:
                res[y, x0:x0 + n] = L.read(n)
                continue
            for i in np.flatnonzero(Z[k].read(n)):
                b = N[k // 3].read(1)[0]
                if b == 0:
                    fail(f"a zero byte in stream {N[k // 3].name}, where the flags say non-zero")
                res[y, x0 + i] = b
        above = np.abs(res[y].astype(np.int8).astype(np.int64))
    return res


def decode_interleaved_frame(parts: list[bytes], k: int, shapes, ref) -> list[np.ndarray]:
    """Frame `k` of a codec 3 chunk (FORMAT.md §3.4) from its 14 decompressed zstd frames;
    `ref` is the planes of frame `k - 2`, None for frames 0 and 1."""
    header, streams = parts[0], parts[1:]
    P = len(shapes)
    n_codes = sum((-(-W // (bs * S))) * (-(-H // bs)) for (W, H, S, bs) in shapes)
    if len(header) != 2 * P + n_codes:
        fail(f"frame {k}: header of {len(header)} bytes, expected {2 * P + n_codes}")
    mvs = np.frombuffer(header[:2 * P], dtype=np.int8).astype(np.int64).reshape(P, 2)
    if ref is None and mvs.any():
        fail(f"non-zero motion vector in frame {k}, which has no reference")
    pos = 2 * P
    codes = []
    for (W, H, S, bs) in shapes:
        n = (-(-W // (bs * S))) * (-(-H // bs))
        c = np.frombuffer(header[pos:pos + n], dtype=np.uint8)
        pos += n
        if (c > 5).any():
            fail(f"unknown predictor code {int(c.max())}")
        if ref is None and np.isin(c, (TEMPORAL, TEMPORAL_MED, MOTION, MOTION_MED)).any():
            fail(f"temporal predictor code in frame {k}, which has no reference")
        codes.append(c)
    names = [f"Z{i}" for i in range(9)] + [f"N{i}" for i in range(3)] + ["L"]
    st = [BitStream(nm, d) if nm[0] == "Z" else ByteStream(nm, d) for nm, d in zip(names, streams)]
    Z, N, L = st[:9], st[9:12], st[12]
    planes = []
    for p, (W, H, S, bs) in enumerate(shapes):
        res = decode_sparse_plane(W, H, Z, N, L)
        prev = ref[p] if ref is not None else None
        planes.append(reconstruct_plane(res, codes[p], bs * S, bs, S, prev,
                                        (int(mvs[p, 0]), int(mvs[p, 1]))))
    for stream in st:
        stream.finish()
    return planes


def decompress_chunk(comp: bytes, cap: int) -> bytes:
    """Exactly one zstd frame, decompressed size at most `cap`."""
    try:
        params = zstandard.get_frame_parameters(comp)
    except zstandard.ZstdError as e:
        fail(f"chunk is not a zstd frame: {e}")
    if params.content_size != zstandard.CONTENTSIZE_UNKNOWN and params.content_size > cap:
        fail(f"chunk declares {params.content_size} decompressed bytes, more than {cap} its frames can need")
    dobj = zstandard.ZstdDecompressor().decompressobj()
    out = []
    size = 0
    step = 256
    try:
        for i in range(0, len(comp), step):
            if dobj.eof:
                fail("chunk holds more than one zstd frame (trailing bytes)")
            piece = dobj.decompress(comp[i:i + step])
            size += len(piece)
            out.append(piece)
            if size > cap:
                fail(f"chunk decompresses to more than {cap} bytes")
    except zstandard.ZstdError as e:
        fail(f"chunk does not decompress: {e}")
    if not dobj.eof:
        fail("chunk is a truncated zstd frame")
    if dobj.unused_data:
        fail("chunk holds more than one zstd frame (trailing bytes)")
    data = b"".join(out)
    if params.content_size != zstandard.CONTENTSIZE_UNKNOWN and params.content_size != len(data):
        fail("chunk's decompressed size differs from its frame header")
    return data


def plain_frames(comp: bytes, n: int, frame_bytes: int | None) -> list[bytes]:
    """A codec 2 chunk (FORMAT.md §3.3): exactly `n` zstd frames back to back, each one
    frame of `frame_bytes` bytes (codec 3, §3.4: `frame_bytes` None, any size)."""
    frames = []
    rest = comp
    for k in range(n):
        if not rest:
            fail(f"chunk ends after {k} of its {n} frames")
        dobj = zstandard.ZstdDecompressor().decompressobj()
        try:
            data = dobj.decompress(rest)
        except zstandard.ZstdError as e:
            fail(f"frame {k} does not decompress: {e}")
        if not dobj.eof:
            fail(f"frame {k} is a truncated zstd frame")
        if frame_bytes is not None and len(data) != frame_bytes:
            fail(f"frame {k} holds {len(data)} bytes, a frame is {frame_bytes}")
        frames.append(data)
        rest = dobj.unused_data
    if rest:
        fail("chunk has bytes after its last frame")
    return frames


# ---------------------------------------------------------------------------------------

def read_frames(set_dir: str, video_id: str, start: int, count: int) -> bytes:
    manifest = load_manifest(set_dir)
    rows = load_index(set_dir, manifest)
    matches = [r for r in rows if r["video_id"] == video_id]
    if not matches:
        fail(f"video {video_id!r} is not in the index")
    row = matches[0]
    shard_name = plain_file_name(row["shard"], "shard")
    shard_path = os.path.join(set_dir, shard_name)
    with open(shard_path, "rb") as f:
        data = f.read()
    check_file_header(shard_path, data)
    rec = parse_record(shard_path, data, row["offset"])
    check_row_against_record(row, rec, manifest, len(data))
    if count < 0 or start < 0 or start + count > rec["num_frames"]:
        fail(f"{video_id}: frames {start}..{start + count} outside 0..{rec['num_frames']}")

    shapes = plane_shapes(rec["width"], rec["height"], rec["pixel_format"])
    frame_bytes = sum(W * H for (W, H, _S, _b) in shapes)
    out = bytearray()
    for ci, ch in enumerate(rec["chunks"]):
        lo, n = ch["first_frame"], ch["num_frames"]
        if lo + n <= start or lo >= start + count:
            continue
        a = row["offset"] + ch["offset"]
        comp = data[a:a + ch["length"]]
        if crc32c(comp) != ch["crc32c"]:
            fail(f"{video_id} in {shard_name}: chunk {ci} checksum (CRC-32C) mismatch: the data is damaged")
        if rec["codec"] == CODEC_PLAIN_ZSTD:
            for j, frame in enumerate(plain_frames(comp, n, frame_bytes)):
                if start <= lo + j < start + count:
                    out += frame
            continue
        n_codes = sum((-(-W // (bs * S))) * (-(-H // bs)) for (W, H, S, bs) in shapes)
        try:
            if rec["codec"] == CODEC_INTERLEAVED:
                parts = plain_frames(comp, 14 * n, None)
                frames = []
                for j in range(n):
                    ref = frames[j - 2] if j >= 2 else None
                    frames.append(decode_interleaved_frame(parts[14 * j:14 * j + 14], j, shapes, ref))
            else:
                # worst case per pixel: 3 bits (Z, O, S) and 1 byte (M), and a padding byte per bit stream
                cap = 2 * n * len(shapes) + n * n_codes + 132 + (n * frame_bytes * 11 + 7) // 8 + 25
                frames = decode_payload(decompress_chunk(comp, cap), n, shapes)
        except FormatError as e:
            fail(f"{video_id} in {shard_name}: chunk {ci}: {e}")
        for j, planes in enumerate(frames):
            if start <= lo + j < start + count:
                for pl in planes:
                    out += pl.tobytes()
    assert len(out) == count * frame_bytes
    return bytes(out)


def main(argv: list[str]) -> int:
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    set_dir, video_id, start, count, out_file = argv[1:]
    try:
        frames = read_frames(set_dir, video_id, int(start), int(count))
    except FormatError as e:
        print(f"format_reader: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"format_reader: error: {e}", file=sys.stderr)
        return 1
    with open(out_file, "wb") as f:
        f.write(frames)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
