#!/usr/bin/env python3
"""``cvrl.torch.CvrlPairs`` in a PyTorch DataLoader, for tests/tests/python_pkg.rs.

    pkg_pairs.py SET_DIR OUT_DIR

Checks that a DataLoader with 2 worker processes (forked, and spawned, which pickles the
dataset) gives the same batches twice and the same as no workers, for one seed; that
``set_epoch`` and the seed change them; that reading only the crop boxes gives the pairs
of cropping whole frames; that ``collate`` gives the batches of ``default_collate`` in
frame-major memory, from forked workers through shared memory reused from batch to batch
(never while a batch is held; taken back from a batch never received); and that
``RandomResizedCropFlip`` crops each clip with one box for all its frames. Writes
OUT_DIR/<i>.pair: the untransformed clips of item i (``[T, H, W, 3]`` each, first then
second) and OUT_DIR/pairs.json with their shapes, which the Rust test rebuilds with the Rust
sampler and reader.
"""

import gc
import json
import os
import pickle
import sys

import torch
from torch.utils.data import DataLoader

from cvrl import _cvrl
from cvrl.torch import CvrlClips, CvrlPairs, RandomResizedCropFlip, collate, shared

FRAMES, STRIDE, SEED = 8, 3, 11


def batches(ds, workers, context=None):
    loader = DataLoader(ds, batch_size=3, num_workers=workers, multiprocessing_context=context)
    return [(a.clone(), b.clone()) for a, b in loader]


def same(x, y):
    return len(x) == len(y) and all(
        torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(x, y))


def check_shared_batches(set_dir: str, ds: CvrlPairs, plain) -> None:
    """``collate`` in forked workers sends batches through the dataset's shared memory,
    reused once the main process drops them; everything else through torch's."""
    # A dataset of its own: slots of the batches in flight when an iterator above was dropped
    # stay taken for a minute.
    ds = CvrlPairs(set_dir, frames=FRAMES, stride=STRIDE, seed=SEED, transform=ds.transform)
    region = ds._region.batches
    loader = lambda d, context="fork": DataLoader(
        d, batch_size=3, num_workers=2, collate_fn=collate, multiprocessing_context=context)
    # Held without a copy through a whole pass: no slot is reused while its batch is held.
    held = list(loader(ds))
    assert same(held, plain), "batches through reused shared memory changed"
    busy, made, _ = region.usage()
    sent = 2 * len(held)
    assert busy == made == sent, (region.usage(), sent)
    assert not any(x.is_shared() for pair in held for x in pair), "a batch in torch's memory"
    # A forked child that inherits the held batches and drops them frees no slot.
    child = os.fork()
    if child == 0:
        del held[:]
        gc.collect()
        os._exit(0)
    os.waitpid(child, 0)
    assert region.usage()[0] == busy, region.usage()
    del held
    assert region.usage()[0] == 0, region.usage()
    # Dropped batch by batch over five passes: the slots are reused, not one per batch.
    for _ in range(5):
        for a, b in loader(ds):
            pass
    del a, b
    busy, made, _ = region.usage()
    # At most 2 workers x prefetch 2 and the batch the loop holds at once: 2 clip batches each.
    assert busy == 0 and made <= max(sent, 2 * (2 * 2 + 1)), region.usage()

    # Without room for a second slot, the rest go in torch's fresh shared memory.
    small = CvrlPairs(set_dir, frames=FRAMES, stride=STRIDE, seed=SEED, transform=ds.transform)
    small._region = shared.Region(max_bytes=-(-plain[0][0].numel() // 4096) * 4096)
    held = list(loader(small))
    assert same(held, plain), "batches past a full region changed"
    assert small._region.batches.usage()[1] == 1, small._region.batches.usage()
    assert sum(x.is_shared() for pair in held for x in pair) == 2 * len(held) - 1
    # Workers started by spawn or forkserver map the region from its memory file.
    for context in ("spawn", "forkserver"):
        before = region.usage()[0]
        held = list(loader(ds, context))
        assert same(held, plain), f"batches of {context} workers changed"
        assert not any(x.is_shared() for pair in held for x in pair), context
        assert region.usage()[0] == before + 2 * len(held), (context, region.usage())
        del held
    # A dataset pickled for anything but a process start has no region, nor has one made
    # with shared_batches=False: their batches go through torch's shared memory.
    fresh = CvrlPairs(set_dir, frames=FRAMES, stride=STRIDE, seed=SEED, transform=ds.transform,
                      shared_batches=False)
    for d in (pickle.loads(pickle.dumps(ds)), fresh):
        held = list(loader(d))
        assert same(held, plain), "batches without a region changed"
        assert all(x.is_shared() for pair in held for x in pair), d._region

    # A batch sent and never received (an iterator dropped with batches in flight) is taken
    # back once its sender has been dead orphan_secs.
    for orphan_secs, taken in ((0, True), (3600, False)):
        one = _cvrl.SharedBatches(4096, orphan_secs=orphan_secs)
        child = os.fork()
        if child == 0:
            slot = one.claim(1000)
            os._exit(0 if slot is not None and slot.send()[1] == os.getpid() else 1)
        _, status = os.waitpid(child, 0)
        assert status == 0 and one.usage()[:2] == (1, 1), (status, one.usage())
        slot = one.claim(1000)
        assert (slot is not None) == taken, (orphan_secs, slot)
        if taken:
            try:
                one.receive(0, child, 1000)
                raise AssertionError("received a slot that was taken back")
            except ValueError as e:
                assert "taken back" in str(e), e


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
    check_shared_batches(set_dir, ds, plain)
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
