"""``cvrl.torch.CvrlPairs`` in a PyTorch DataLoader, for ``just bench-loader``
(scripts/bench-loader.sh runs this after its rounds, with the release wheel installed).

    bench_loader_torch.py RESULTS SHARDS [SHARDS ...] --pairs N --workers 1 W --rounds R

Per pair, the peers' work on each shard set: ``CvrlPairs(SHARDS, frames=16, stride=2,
interval="decreasing")`` reads the two clips (cvrl's reader, RGB) cut to the crop boxes
that ``RandomResizedCropFlip(224, attempts=10)`` draws (area 0.3-1, aspect 0.5-2, else the
whole frame; only the box is converted to RGB) and mirrored with p = 0.5, which then resizes
each bilinearly to 224x224 (``resize_clip``: torch's uint8 kernel, antialias off): uint8
``[3, 16, 224, 224]``, the work scripts/bench_loader_peers.py does after decoding (which
flips after the resize). A DataLoader with W forked worker processes (torch 1 thread each),
batches of 4 collated by ``cvrl.torch.collate`` into shared memory reused from batch to batch
(and, in further rows, into a fresh shared-memory file per batch, ``shared_batches=False``,
and by torch's ``default_collate``), one warm-up batch per worker, then N pairs timed. Wall:
from the first timed batch's request to the last's arrival. CPU: user + system time of the
workers (/proc) and of the main process over the same window; with prefetching, the work a worker
does ahead at the end roughly offsets what it did ahead at the start. Best of R rounds per
row. Then, per shard set, where one pair's CPU goes (one process, no
DataLoader, 24 pairs): reading the clips as stored planes, as whole RGB frames, as RGB cut
to the crop boxes and mirrored (what ``CvrlPairs`` reads, the transform having
``read_box``), the resize, and ``__getitem__`` in all.

Prints a markdown section comparing these rows with the rows of the same run in RESULTS
(scripts/bench-loader.sh's rust_*.tsv, variant_*.tsv and peers_*.tsv): the peers (decord,
PyAV, torchcodec decoding the source mp4s) and, per shard set, the Rust loader with crop +
flip only on the same shards (the same work in Rust; ``shards`` is read from rust_*.tsv,
``shards-NAME`` from variant_NAME_*.tsv, which need the ``cropflip`` part), with two
verdicts per shard set and worker count: >= 5x the best peer, and within 1.5x of the Rust
loader. Also writes RESULTS/torch_R.tsv rows in the peers' format (the name
``cvrl_torch_COLLATE@SET``).
"""

import argparse
import glob
import itertools
import os
import random
import time

import torch
from torch.utils.data import DataLoader, default_collate

from cvrl.torch import CvrlPairs, RandomResizedCropFlip, collate

BATCH = 4
# The DataLoader's collate_fn of each row and the dataset's shared_batches: cvrl's collate,
# which keeps the clips' frame-major memory, into shared memory reused from batch to batch
# and (``fresh``) into torch's fresh shared memory per batch; torch's default, which stacks
# them channel-major.
COLLATES = {"collate": (collate, True), "fresh": (collate, False),
            "default": (default_collate, True)}


def worker_cpu(pids):
    """User + system seconds of processes ``pids`` (/proc/PID/stat fields 14 and 15)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def measure(shards, pairs, workers, seed, collate_fn, shared_batches):
    torch.set_num_threads(1)
    ds = CvrlPairs(shards, frames=16, stride=2, interval="decreasing", seed=seed,
                   transform=RandomResizedCropFlip(224, attempts=10),
                   shared_batches=shared_batches)
    rng = random.Random(seed)
    order = [rng.randrange(len(ds)) for _ in range((workers + pairs // BATCH) * BATCH)]
    loader = DataLoader(ds, batch_size=BATCH, sampler=order, num_workers=workers,
                        multiprocessing_context="fork", collate_fn=collate_fn)
    it = iter(loader)
    for _ in range(workers):
        next(it)
    pids = [w.pid for w in it._workers]
    c0, t0 = worker_cpu(pids) + time.process_time(), time.monotonic()
    done = 0
    for _ in range(pairs // BATCH):
        a, _ = next(it)
        done += len(a)
    wall = time.monotonic() - t0
    cpu = worker_cpu(pids) + time.process_time() - c0
    del it
    return done, wall, cpu


def profile(shards, pairs, seed):
    """Milliseconds of CPU per pair in this process: ``(planes, rgb, boxes, finish,
    getitem)``: reading the two clips as stored planes, as whole RGB frames, as RGB cut to
    the transform's crop boxes and mirrored (what ``__getitem__`` reads), resizing the boxes,
    and ``__getitem__`` in all."""
    torch.set_num_threads(1)
    ds = CvrlPairs(shards, frames=16, stride=2, interval="decreasing", seed=seed,
                   transform=RandomResizedCropFlip(224, attempts=10))
    sset = ds.shards
    rng = random.Random(seed)
    items = [rng.randrange(len(ds)) for _ in range(pairs)]
    ds[items[0]]
    t = [0.0] * 5

    def timed(k, f):
        c = time.process_time()
        out = f()
        t[k] += time.process_time() - c
        return out

    for i in items:
        v = sset.video(i)
        clips = [list(c) for c in ds._indices(sset, v)]
        timed(0, lambda: sset._set.read(v, clips, False))
        timed(1, lambda: sset.read_clips(v, clips))
        g = torch.Generator().manual_seed(i)
        h, w = sset.frame_size(v)
        (box_a, flip_a, fin_a), (box_b, flip_b, fin_b) = (ds.transform.read_box(h, w, g)
                                                          for _ in range(2))
        a, b = timed(2, lambda: sset.read_clips(v, clips, boxes=[box_a, box_b],
                                                flips=[flip_a, flip_b]))
        a, b = torch.from_numpy(a).permute(3, 0, 1, 2), torch.from_numpy(b).permute(3, 0, 1, 2)
        timed(3, lambda: (fin_a(a), fin_b(b)))
        timed(4, lambda: ds[i])
    return [1e3 * x / pairs for x in t]


def set_name(shards):
    """``shards`` -> ``shards``; ``.../shards-plain-c8`` -> ``plain-c8`` (bench-loader.sh's
    names)."""
    base = os.path.basename(os.path.normpath(shards))
    return base[len("shards-"):] if base.startswith("shards-") else base


def read_rows(results):
    """``(name, workers) -> (best pairs/s wall, best pairs per CPU second)`` of the run; the
    Rust rows of a variant shard set are named ``NAME@SET``."""
    best = {}
    files = [(p, "") for p in glob.glob(f"{results}/rust_*.tsv") + glob.glob(f"{results}/peers_*.tsv")]
    files += [(p, "@" + os.path.basename(p)[len("variant_"):].rsplit("_", 1)[0])
              for p in glob.glob(f"{results}/variant_*.tsv")]
    for path, suffix in files:
        for line in open(path):
            f = line.rstrip("\n").split("\t")
            if f[0] != "row":
                continue
            key, pairs, wall_rate, cpu = (f[1] + suffix, int(f[2])), int(f[3]), float(f[5]), float(f[7])
            w, c = best.get(key, (0.0, 0.0))
            best[key] = (max(w, wall_rate), max(c, pairs / cpu if cpu > 0 else 0.0))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("shards", nargs="+")
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile-pairs", type=int, default=24)
    args = ap.parse_args()
    ws = sorted(set(args.workers))
    sets = [(set_name(d), d) for d in args.shards]
    ours = {}
    for r in range(1, args.rounds + 1):
        with open(os.path.join(args.results, f"torch_{r}.tsv"), "w") as tsv:
            for name, d in sets:
                for (how, (collate_fn, reuse)), w in itertools.product(COLLATES.items(), ws):
                    n, wall, cpu = measure(d, args.pairs, w, args.seed + r, collate_fn, reuse)
                    print(f"row\tcvrl_torch_{how}@{name}\t{w}\t{n}\t{wall:.4f}\t{n / wall:.2f}"
                          f"\t{wall:.3f}\t{cpu:.3f}", file=tsv, flush=True)
                    old = ours.get((name, how, w), (0.0, 0.0))
                    ours[(name, how, w)] = (max(old[0], n / wall), max(old[1], n / cpu))
    prof = {name: profile(d, args.profile_pairs, args.seed) for name, d in sets}

    best = read_rows(args.results)
    wn = lambda w: f"{w} worker{'s' if w > 1 else ''}"
    fmt = lambda x: f"{x:.2f}" if x else "-"
    label = lambda name: "defaults" if name == "shards" else name
    print("\n### The cvrl Python package in a PyTorch DataLoader\n")
    print(f"`scripts/bench_loader_torch.py`: `CvrlPairs` + `RandomResizedCropFlip(224)` (the "
          f"crop box read and mirrored by cvrl, the resize in torch, as the peers resize) in a "
          f"DataLoader of W forked worker processes, {args.pairs} pairs timed, best of "
          f"{args.rounds} rounds, after the rounds above on the same machine. Other rows: the "
          f"same run's.\n")
    print("| what | reads | " + " | ".join(f"pairs/s wall, {wn(w)}" for w in ws) + " | "
          + " | ".join(f"pairs per CPU s, {wn(w)}" for w in ws) + " |")
    print("|---|---|" + "---:|" * (2 * len(ws)))
    rows = []
    for name, _ in sets:
        suffix = "" if name == "shards" else f"@{name}"
        shards = f"shards ({label(name)})"
        rows.append(("`cvrl.torch.CvrlPairs` in a DataLoader, `collate_fn=cvrl.torch.collate`",
                     shards, {w: ours[(name, "collate", w)] for w in ws}))
        rows.append(("the same, a fresh shared-memory batch each (`shared_batches=False`)",
                     shards, {w: ours[(name, "fresh", w)] for w in ws}))
        rows.append(("the same, `default_collate` (a transposing copy)", shards,
                     {w: ours[(name, "default", w)] for w in ws}))
        rows.append(("cvrl `Loader` (Rust), crop + flip only", shards,
                     {w: best.get((f"loader_cropflip{suffix}", w), (None, None)) for w in ws}))
    peer_labels = {"decord": "decord", "pyav": "PyAV", "torchcodec": "torchcodec"}
    for p, lab in peer_labels.items():
        rows.append((lab, "source mp4", {w: best.get((p, w), (None, None)) for w in ws}))
    for lab, reads, cells in rows:
        print(f"| {lab} | {reads} | " + " | ".join(fmt(cells[w][0]) for w in ws) + " | "
              + " | ".join(fmt(cells[w][1]) for w in ws) + " |")

    print(f"\nWhere a pair's CPU goes in `CvrlPairs` (one process, {args.profile_pairs} pairs, "
          f"ms per pair; the DataLoader's share is the 1-worker row's CPU per pair less "
          f"`__getitem__`):\n")
    print("| shards | read as planes | read as RGB | read the crop boxes as RGB, mirrored | "
          "resize | `__getitem__` | DataLoader, 1 worker |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, _ in sets:
        planes, rgb, boxes, finish, item = prof[name]
        per = 1e3 / ours[(name, "collate", ws[0])][1]
        print(f"| {label(name)} | {planes:.1f} | {rgb:.1f} | {boxes:.1f} | {finish:.1f} "
              f"| {item:.1f} | {per:.1f} |")

    print("\nVerdicts (pairs per CPU second, for each worker count):\n")
    for name, w in itertools.product([n for n, _ in sets], ws):
        mine = ours[(name, "collate", w)][1]
        peers = [(best[(p, w)][1], peer_labels[p]) for p in peer_labels
                 if best.get((p, w), (0, 0))[1]]
        if peers:
            bp, bn = max(peers)
            verdict = "MET" if mine >= 5 * bp else "MISSED"
            print(f"- {label(name)} shards, {wn(w)}, >= 5x the best peer: {verdict}: {mine:.2f} "
                  f"vs {bn} {bp:.2f} = {mine / bp:.2f}x")
        suffix = "" if name == "shards" else f"@{name}"
        rust = best.get((f"loader_cropflip{suffix}", w), (0, 0))[1]
        if rust:
            verdict = "MET" if rust <= 1.5 * mine else "MISSED"
            print(f"- {label(name)} shards, {wn(w)}, within 1.5x of the Rust loader doing the "
                  f"same work on the same shards: {verdict}: Rust {rust:.2f} vs {mine:.2f} = "
                  f"{rust / mine:.2f}x")

if __name__ == "__main__":
    main()
