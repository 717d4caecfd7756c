#!/usr/bin/env python3
"""The installed ``cvrl`` package's frames and index, for tests/tests/python_pkg.rs.

    pkg_frames.py SET_DIR REQUESTS_JSON OUT_DIR

REQUESTS_JSON maps video ids to frame index lists. For each, writes OUT_DIR/<n>.rgb (the
bytes of ``read_frames``, ``[T, H, W, 3]``) and, for ``yuv420p`` videos, OUT_DIR/<n>.yuv
(``read_planes``' Y, U, V re-interleaved frame by frame, the stored layout), where n is the
video's position; the Rust test compares them with its own reader. Checked here: the index
equals pyarrow's read of index.parquet, the class list is the manifest's, and four threads
reading at once (the GIL released while decoding) get the same bytes as one.
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

    for (v, idx), rgb in zip(jobs, alone):
        h, w = shards.frame_size(v)
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
