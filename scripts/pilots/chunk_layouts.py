"""Bytes per frame of candidate chunk layouts for faster reads, on a raw yuv420p video.

Codec 1 (FORMAT.md §3.2) decodes at 130-220 MB/s, limited by its per-residual bit reads, and
a stride-2 clip reconstructs every frame up to its last one in each chunk. This measures
what two changes cost in size, before any of them is built into the format:

- the reference: frame k predicted from frame k-1 (codec 1) or from k-2 (the even and the odd
  frames of a chunk form two chains, so a stride-2 clip reconstructs only its own);
- the residual coding, per frame, each stream its own zstd frame at level 1:
  `bytes`: the residual bytes as they are (zstd's Huffman decoder, no bit reads);
  `flags+bytes`: codec 1's zero flags (one bit per residual in the 9 group contexts of
  FORMAT.md §3.2.3; busy groups as literal bytes) and the non-zero residuals as bytes in 4
  streams by group context (no sign or magnitude bit streams).

Prediction is codec 1's adaptive choice (MED, TEMPORAL, TEMPORAL_MED, MOTION, MOTION_MED per
16x16 block, 8x8 in chroma; one vector per plane within 8 pixels, 4 in chroma; the smallest
sum of |residual|), in numpy. Codec 1 itself is measured by `codec_eval` on the same file.

    ffmpeg -i bikes.mp4 -vf scale=-2:256 -pix_fmt yuv420p -f rawvideo bikes.yuv
    .venv/bin/python scripts/pilots/chunk_layouts.py bikes.yuv 602 256 [FRAMES]
"""
import sys

import numpy as np
import zstandard as zs

CHUNK = 8
Z_THRESHOLDS = np.array([0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 28, 40])


def planes(frame, w, h):
    y, c = w * h, w * h // 4
    return [frame[:y].reshape(h, w), frame[y:y + c].reshape(h // 2, w // 2),
            frame[y + c:].reshape(h // 2, w // 2)]


def sp(x):
    """FORMAT.md's spatial rule sp() with S = 1."""
    a = np.zeros_like(x)
    a[:, 1:] = x[:, :-1]
    b = np.zeros_like(x)
    b[1:, :] = x[:-1, :]
    c = np.zeros_like(x)
    c[1:, 1:] = x[:-1, :-1]
    p = np.clip(a + b - c, np.minimum(a, b), np.maximum(a, b))
    p[0, :] = a[0, :]
    p[1:, 0] = b[1:, 0]
    return p


def shifted(p, dx, dy):
    h, w = p.shape
    return p[np.clip(np.arange(h) + dy, 0, h - 1)][:, np.clip(np.arange(w) + dx, 0, w - 1)]


def vector(x, p, r):
    """The shift of `p` with the smallest SAD on every fourth row (second in small planes)."""
    h, w = x.shape
    r = min(r, w // 4, h // 4)
    step = 4 if h >= 64 else 2
    xs = x[::step].astype(np.int32)
    best, bv = None, (0, 0)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            s = np.abs(xs - shifted(p, dx, dy)[::step].astype(np.int32)).sum()
            if best is None or s < best:
                best, bv = s, (dx, dy)
    return bv


def residual(x, p, block, r):
    """The adaptive residual plane (uint8) of plane `x` with reference plane `p` or None."""
    x = x.astype(np.int32)
    cands = [x - sp(x)]
    if p is not None:
        d = x - p.astype(np.int32)
        cands += [d, d - sp(d)]
        dx, dy = vector(x, p, r)
        if (dx, dy) != (0, 0):
            e = x - shifted(p, dx, dy).astype(np.int32)
            cands += [e, e - sp(e)]
    cands = [(c + 128) % 256 - 128 for c in cands]
    costs = [np.abs(c) for c in cands]
    out = cands[0].copy()
    h, w = x.shape
    for by in range(0, h, block):
        for bx in range(0, w, block):
            k = int(np.argmin([c[by:by + block, bx:bx + block].sum() for c in costs]))
            out[by:by + block, bx:bx + block] = cands[k][by:by + block, bx:bx + block]
    return (out & 255).astype(np.uint8)


def flag_streams(res):
    """`flags+bytes`: 9 zero-flag bit streams, 4 non-zero byte streams, 1 literal stream."""
    h, w = res.shape
    mag = np.abs(res.astype(np.int8).astype(np.int32))
    flags = [[] for _ in range(9)]
    nonzero = [[] for _ in range(4)]
    literal = []
    up = np.zeros(w + 16, np.int32)  # |v| of the row above, 8 bytes of padding each side
    for y in range(h):
        for x0 in range(0, w, 8):
            k = int((Z_THRESHOLDS < up[x0 + 7:x0 + 17].sum()).sum())
            group = res[y, x0:x0 + 8]
            if k >= 9:
                literal.append(group.tobytes())
                continue
            nz = np.pad(group != 0, (0, 8 - len(group)))
            flags[k].append(np.packbits(nz, bitorder="little"))
            nonzero[k // 3].append(group[group != 0].tobytes())
        up[8:8 + w] = mag[y]
    return ([np.concatenate(f).tobytes() if f else b"" for f in flags]
            + [b"".join(n) for n in nonzero] + [b"".join(literal)])


def main(path, w, h, frames=None):
    w, h = int(w), int(h)
    fb = w * h * 3 // 2
    raw = np.fromfile(path, np.uint8)
    n = len(raw) // fb if frames is None else min(len(raw) // fb, int(frames))
    n -= n % CHUNK
    video = raw[:n * fb].reshape(n, fb)
    zstd = zs.ZstdCompressor(level=1)
    size = {}
    for ref in (1, 2):
        for c0 in range(0, n, CHUNK):
            for k in range(CHUNK):
                refs = planes(video[c0 + k - ref], w, h) if k >= ref else [None] * 3
                res = [residual(x, p, 16 if i == 0 else 8, 8 if i == 0 else 4)
                       for i, (x, p) in enumerate(zip(planes(video[c0 + k], w, h), refs))]
                size[ref, "bytes"] = size.get((ref, "bytes"), 0) + len(
                    zstd.compress(b"".join(r.tobytes() for r in res)))
                streams = [b"".join(s) for s in zip(*(flag_streams(r) for r in res))]
                size[ref, "flags+bytes"] = size.get((ref, "flags+bytes"), 0) + sum(
                    len(zstd.compress(s)) for s in streams if s)
    print(f"{path}: {n} frames of {w}x{h}, chunks of {CHUNK}, zstd 1, bytes per frame")
    print("| reference | bytes | flags+bytes |\n|---|---:|---:|")
    for ref in (1, 2):
        print(f"| k-{ref} | {size[ref, 'bytes'] / n:.0f} | {size[ref, 'flags+bytes'] / n:.0f} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
