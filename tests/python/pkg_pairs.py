#!/usr/bin/env python3
"""``cvrl.torch.CvrlPairs`` in a PyTorch DataLoader, for tests/tests/python_pkg.rs.

    pkg_pairs.py SET_DIR OUT_DIR

Checks that a DataLoader with 2 worker processes (forked, and spawned, which pickles the
dataset) gives the same batches twice and the same as no workers, for one seed; that
``set_epoch`` and the seed change them; that reading only the crop boxes gives the pairs
of cropping whole frames; that ``collate`` gives the batches of ``default_collate`` in
frame-major memory; and that ``RandomResizedCropFlip`` crops each clip
with one box for all its frames. Writes OUT_DIR/<i>.pair: the untransformed clips of item i
(``[T, H, W, 3]`` each, first then second) and OUT_DIR/pairs.json with their shapes, which
the Rust test rebuilds with the Rust sampler and reader.
"""

import json
import os
import sys

import torch
from torch.utils.data import DataLoader

from cvrl.torch import CvrlClips, CvrlPairs, RandomResizedCropFlip, collate

FRAMES, STRIDE, SEED = 8, 3, 11


def batches(ds, workers, context=None):
    loader = DataLoader(ds, batch_size=3, num_workers=workers, multiprocessing_context=context)
    return [(a.clone(), b.clone()) for a, b in loader]


def same(x, y):
    return len(x) == len(y) and all(
        torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(x, y))


def main(set_dir: str, out: str) -> None:
    crop = RandomResizedCropFlip(24)
    ds = CvrlPairs(set_dir, frames=FRAMES, stride=STRIDE, seed=SEED, transform=crop)
    plain = batches(ds, 0)
    assert len(plain) == (len(ds) + 2) // 3
    assert plain[0][0].shape == (3, 3, FRAMES, 24, 24) and plain[0][0].dtype == torch.uint8
    forked = [batches(ds, 2, "fork") for _ in range(2)]
    assert same(forked[0], forked[1]), "two passes with 2 worker processes differ"
    assert same(forked[0], plain), "2 worker processes differ from none"
    assert same(batches(ds, 2, "spawn"), plain), "spawned workers differ from none"
    # The crop read as a box (read_box) against the whole frames cropped in torch.
    whole = CvrlPairs(set_dir, frames=FRAMES, stride=STRIDE, seed=SEED,
                      transform=lambda clip, g: crop(clip, g))
    assert same(batches(whole, 0), plain), "reading only the crop boxes changed the pairs"
    # cvrl.torch.collate: the same batches in frame-major (channels-last) memory, shared
    # from worker processes; labels of CvrlClips batched as default_collate batches them.
    for workers in (0, 2):
        kept = [(a.clone(), b.clone()) for a, b in DataLoader(
            ds, batch_size=3, num_workers=workers, collate_fn=collate)]
        assert same(kept, plain), f"collate with {workers} workers changed the batches"
        a, _ = next(iter(DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=collate)))
        assert a.is_contiguous(memory_format=torch.channels_last_3d), a.stride()
        assert a.is_shared() == (workers > 0), (workers, a.is_shared())
    clips = CvrlClips(set_dir, frames=FRAMES, stride=STRIDE, temporal_views=2, spatial_crops=2,
                      size=24)
    for (x, y), (u, v) in zip(DataLoader(clips, batch_size=5),
                              DataLoader(clips, batch_size=5, collate_fn=collate)):
        assert torch.equal(x, u) and torch.equal(y, v) and v.dtype == torch.int64, (y, v)
    ds.set_epoch(1)
    assert not same(batches(ds, 0), plain), "set_epoch(1) did not change the pairs"
    other = CvrlPairs(set_dir, frames=FRAMES, stride=STRIDE, seed=SEED + 1, transform=crop)
    assert not same(batches(other, 0), plain), "another seed gave the same pairs"

    # One box and one flip for every frame: a clip of identical frames stays identical.
    still = torch.arange(3 * 40 * 50, dtype=torch.float32).reshape(3, 1, 40, 50) % 251
    still = still.to(torch.uint8).expand(3, 5, 40, 50)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out_clip = crop(still, g)
        assert out_clip.shape == (3, 5, 24, 24)
        assert all(torch.equal(out_clip[:, 0], out_clip[:, t]) for t in range(5))

    raw = CvrlPairs(set_dir, frames=FRAMES, stride=STRIDE, seed=SEED)
    shapes = []
    for i in range(len(raw)):
        a, b = raw[i]
        assert a.shape[:2] == (3, FRAMES) and a.dtype == torch.uint8
        with open(os.path.join(out, f"{i}.pair"), "wb") as f:
            for clip in (a, b):
                f.write(clip.permute(1, 2, 3, 0).contiguous().numpy().tobytes())
        shapes.append(list(a.shape))
    with open(os.path.join(out, "pairs.json"), "w") as f:
        json.dump({"frames": FRAMES, "stride": STRIDE, "seed": SEED, "shapes": shapes}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
