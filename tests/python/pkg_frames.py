#!/usr/bin/env python3
"""The installed ``cvrl`` package's frames and index, for tests/tests/python_pkg.rs.

    pkg_frames.py SET_DIR REQUESTS_JSON OUT_DIR

REQUESTS_JSON maps video ids to frame index lists. For each, writes OUT_DIR/<n>.rgb (the
bytes of ``read_frames``, ``[T, H, W, 3]``) and, for ``yuv420p`` videos, OUT_DIR/<n>.yuv
(``read_planes``' Y, U, V re-interleaved frame by frame, the stored layout), where n is the
video's position; the Rust test compares them with its own reader. Checked here: the index
equals pyarrow's read of index.parquet, the class list is the manifest's, and four threads
reading at once (the GIL released while decoding) get the same bytes as one, reads that
reuse the memory of dropped frames neither change frames still in use nor differ from the
first, and reads cut to boxes (odd and even edges, the whole frame, one pixel) and mirrored
are the whole frames sliced and flipped.
"""

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq

import cvrl


def main(set_dir: str, requests: str, out: str) -> None:
    shards = cvrl.ShardSet(set_dir)
    with open(os.path.join(set_dir, "manifest.json")) as f:
        manifest = json.load(f)
    assert shards.classes == manifest["classes"], (shards.classes, manifest["classes"])
    table = shards.index
    expected = pq.read_table(os.path.join(set_dir, "index.parquet"))
    assert table.equals(expected), "ShardSet.index differs from pyarrow's read of index.parquet"
    assert len(shards) == table.num_rows

    with open(requests) as f:
        wanted = json.load(f)
    assert sorted(wanted) == sorted(table.column("video_id").to_pylist())
    jobs = [(shards.video(vid), indices) for vid, indices in wanted.items()]
    alone = [shards.read_frames(v, idx) for v, idx in jobs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda job: shards.read_frames(*job), jobs * 3))
    for k, frames in enumerate(together):
        assert np.array_equal(frames, alone[k % len(jobs)]), f"thread read {k} differs"

    # Reads reuse the memory of frames nothing views any more, never of frames still in use:
    # slices kept across later reads keep their bytes, and frames overwritten by the caller
    # (they are writable) and then dropped read correctly once their memory is reused.
    kept = [shards.read_frames(v, idx)[len(idx) // 2:] for v, idx in jobs]
    copies = [k.copy() for k in kept]
    del together
    for _ in range(3):
        for (v, idx), want in zip(jobs, alone):
            got = shards.read_frames(v, idx)
            assert np.array_equal(got, want), f"a read into reused memory differs: {v}"
            got[:] = 7
            del got
    for k, c in zip(kept, copies):
        assert np.array_equal(k, c), "frames still in use were overwritten by a later read"

    rng = np.random.default_rng(5)
    for (v, idx), rgb in zip(jobs, alone):
        h, w = shards.frame_size(v)
        boxes = [(0, 0, h, w), (h - 1, w - 1, 1, 1)]
        for _ in range(6):
            bh, bw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            boxes.append((top, left, bh, bw))
        flips = [k % 2 == 1 for k in range(len(boxes))]
        cut = shards.read_clips(v, [idx] * len(boxes), boxes=boxes, flips=flips)
        for box, flip, got in zip(boxes, flips, cut):
            top, left, bh, bw = box
            want = rgb[:, top:top + bh, left:left + bw]
            assert np.array_equal(got, want[:, :, ::-1] if flip else want), f"box {box} {flip}"
        (whole,) = shards.read_clips(v, [idx], flips=[True])
        assert np.array_equal(whole, rgb[:, :, ::-1]), "a whole frame mirrored"
        for bad in [(0, 0, 0, w), (1, 0, h, w), (0, w, 1, 1), (-1, 0, 1, 1)]:
            try:
                shards.read_clips(v, [idx], boxes=[bad])
            except ValueError as e:
                assert "box" in str(e), e
            else:
                raise AssertionError(f"box {bad} of a {w}x{h} frame must raise ValueError")
        # One box and one flip per clip: a count that differs names both counts.
        for kw, want in [({"boxes": [(0, 0, h, w)] * 2}, "2 boxes for 1 clips"),
                         ({"flips": [True, False, True]}, "3 flips for 1 clips"),
                         ({"boxes": [], "flips": [True]}, "0 boxes for 1 clips")]:
            try:
                shards.read_clips(v, [idx], **kw)
            except ValueError as e:
                assert want in str(e), (kw, e)
            else:
                raise AssertionError(f"read_clips with {kw} for one clip must raise ValueError")
        assert rgb.shape == (len(idx), h, w, 3) and rgb.dtype == np.uint8, rgb.shape
        with open(os.path.join(out, f"{v}.rgb"), "wb") as f:
            f.write(rgb.tobytes())
        if shards.pixel_format(v) == "yuv420p":
            y, u, v_ = shards.read_planes(v, idx)
            frames = [np.concatenate([y[t].ravel(), u[t].ravel(), v_[t].ravel()])
                      for t in range(len(idx))]
            with open(os.path.join(out, f"{v}.yuv"), "wb") as f:
                f.write(b"".join(fr.tobytes() for fr in frames))
        else:
            try:
                shards.read_planes(v, idx)
            except ValueError:
                pass
            else:
                raise AssertionError("read_planes of an rgb24 video must raise ValueError")


if __name__ == "__main__":
    main(*sys.argv[1:])
