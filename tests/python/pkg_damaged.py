#!/usr/bin/env python3
"""A damaged chunk through the installed ``cvrl`` package, for tests/tests/python_pkg.rs.

    pkg_damaged.py SET_DIR VIDEO_ID GOOD_FRAME BAD_FRAME

BAD_FRAME lies in a chunk with a flipped byte, GOOD_FRAME in an intact one. Reading the
good frame works; reading the bad one raises ``cvrl.ShardError`` naming the shard file, the
video and the chunk, directly and from inside a DataLoader worker process.
"""

import sys

from torch.utils.data import DataLoader

import cvrl
from cvrl.torch import CvrlPairs


def main(set_dir, video_id, good, bad):
    shards = cvrl.ShardSet(set_dir)
    shards.read_frames(video_id, [int(good)])
    shard = shards.shard_path(video_id)
    try:
        shards.read_frames(video_id, [int(bad)])
    except cvrl.ShardError as e:
        message = str(e)
    else:
        raise AssertionError("reading a damaged chunk raised nothing")
    print(f"read_frames: {message}")
    for part in (video_id, shard, "checksum"):
        assert part in message, f"{part!r} not in {message!r}"

    # Every pair of this video touches the damaged chunk when it spans the whole video.
    n = shards.num_frames(video_id)
    ds = CvrlPairs(set_dir, frames=n, stride=1, base_fps=shards.fps(video_id))
    loader = DataLoader(ds, batch_size=None, num_workers=2, sampler=[shards.video(video_id)])
    try:
        list(loader)
    except cvrl.ShardError as e:
        message = str(e)
    else:
        raise AssertionError("a DataLoader worker reading a damaged chunk raised nothing")
    print(f"DataLoader: {message.splitlines()[-1]}")
    assert video_id in message and "checksum" in message, message


if __name__ == "__main__":
    main(*sys.argv[1:])
