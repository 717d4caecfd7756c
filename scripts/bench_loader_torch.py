"""``cvrl.torch.CvrlPairs`` in a PyTorch DataLoader, for ``just bench-loader``
(scripts/bench-loader.sh runs this after its rounds, with the release wheel installed).

    bench_loader_torch.py SHARDS RESULTS --pairs N --workers 1 W --rounds R

Per pair, the peers' work on the bench's shards: ``CvrlPairs(SHARDS, frames=16, stride=2,
interval="decreasing")`` reads the two clips (cvrl's reader, RGB), then
``RandomResizedCropFlip(224, attempts=10)`` crops each (area 0.3-1, aspect 0.5-2, else the
whole frame), resizes it bilinearly to 224x224 (torch, antialias off) and flips it with
p = 0.5: uint8 ``[3, 16, 224, 224]``, as scripts/bench_loader_peers.py does after decoding.
A DataLoader with W forked worker processes (torch 1 thread each), batches of 4, one warm-up
batch per worker, then N pairs timed. Wall: from the first timed batch's request to the
last's arrival. CPU: user + system time of the workers (/proc) and of the main process over
the same window; with prefetching, the work a worker does ahead at the end roughly offsets
what it did ahead at the start. Best of R rounds per row.

Prints a markdown section comparing these rows with the rows of the same run in RESULTS
(scripts/bench-loader.sh's rust_*.tsv and peers_*.tsv): the peers (decord, PyAV, torchcodec
decoding the source mp4s) and the Rust loader with crop + flip only (the same work in
Rust), with two verdicts: >= 5x the best peer, and within 1.5x of the Rust loader. Also
writes RESULTS/torch_R.tsv rows in the peers' format.
"""

import argparse
import glob
import os
import random
import time

import torch
from torch.utils.data import DataLoader

from cvrl.torch import CvrlPairs, RandomResizedCropFlip

BATCH = 4


def worker_cpu(pids):
    """User + system seconds of processes ``pids`` (/proc/PID/stat fields 14 and 15)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def measure(shards, pairs, workers, seed):
    torch.set_num_threads(1)
    ds = CvrlPairs(shards, frames=16, stride=2, interval="decreasing", seed=seed,
                   transform=RandomResizedCropFlip(224, attempts=10))
    rng = random.Random(seed)
    order = [rng.randrange(len(ds)) for _ in range((workers + pairs // BATCH) * BATCH)]
    loader = DataLoader(ds, batch_size=BATCH, sampler=order, num_workers=workers,
                        multiprocessing_context="fork")
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


def read_rows(results):
    """``(name, workers) -> (best pairs/s wall, best pairs per CPU second)`` of the run."""
    best = {}
    for path in glob.glob(f"{results}/rust_*.tsv") + glob.glob(f"{results}/peers_*.tsv"):
        for line in open(path):
            f = line.rstrip("\n").split("\t")
            if f[0] != "row":
                continue
            key, pairs, wall_rate, cpu = (f[1], int(f[2])), int(f[3]), float(f[5]), float(f[7])
            w, c = best.get(key, (0.0, 0.0))
            best[key] = (max(w, wall_rate), max(c, pairs / cpu if cpu > 0 else 0.0))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("results")
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    ws = sorted(set(args.workers))
    ours = {}
    for r in range(1, args.rounds + 1):
        with open(os.path.join(args.results, f"torch_{r}.tsv"), "w") as tsv:
            for w in ws:
                n, wall, cpu = measure(args.shards, args.pairs, w, args.seed + r)
                print(f"row\tcvrl_torch\t{w}\t{n}\t{wall:.4f}\t{n / wall:.2f}\t{wall:.3f}\t{cpu:.3f}",
                      file=tsv, flush=True)
                old = ours.get(w, (0.0, 0.0))
                ours[w] = (max(old[0], n / wall), max(old[1], n / cpu))

    best = read_rows(args.results)
    wn = lambda w: f"{w} worker{'s' if w > 1 else ''}"
    fmt = lambda x: f"{x:.2f}" if x else "-"
    print("\n### The cvrl Python package in a PyTorch DataLoader\n")
    print(f"`scripts/bench_loader_torch.py`: `CvrlPairs` + `RandomResizedCropFlip(224)` (crop, "
          f"resize and flip in torch, as the peers) in a DataLoader of W forked worker "
          f"processes, {args.pairs} pairs timed, best of {args.rounds} rounds, after the rounds "
          f"above on the same machine. Other rows: the same run's.\n")
    print("| what | " + " | ".join(f"pairs/s wall, {wn(w)}" for w in ws) + " | "
          + " | ".join(f"pairs per CPU s, {wn(w)}" for w in ws) + " |")
    print("|---|" + "---:|" * (2 * len(ws)))
    rows = [("`cvrl.torch.CvrlPairs` in a DataLoader", {w: ours[w] for w in ws})]
    labels = {"loader_cropflip": "cvrl `Loader` (Rust), crop + flip only", "decord": "decord",
              "pyav": "PyAV", "torchcodec": "torchcodec"}
    for name, label in labels.items():
        rows.append((label, {w: best.get((name, w), (None, None)) for w in ws}))
    for label, cells in rows:
        print(f"| {label} | " + " | ".join(fmt(cells[w][0]) for w in ws) + " | "
              + " | ".join(fmt(cells[w][1]) for w in ws) + " |")

    print("\nVerdicts (pairs per CPU second, 1 worker):\n")
    mine = ours[ws[0]][1]
    peers = [(best[(p, ws[0])][1], labels[p]) for p in ("decord", "pyav", "torchcodec")
             if best.get((p, ws[0]), (0, 0))[1]]
    if peers:
        bp, bn = max(peers)
        verdict = "MET" if mine >= 5 * bp else "MISSED"
        print(f"- >= 5x the best peer: {verdict}: {mine:.2f} vs {bn} {bp:.2f} = {mine / bp:.2f}x")
    rust = best.get(("loader_cropflip", ws[0]), (0, 0))[1]
    if rust:
        verdict = "MET" if rust <= 1.5 * mine else "MISSED"
        print(f"- within 1.5x of the Rust loader doing the same work: {verdict}: Rust "
              f"{rust:.2f} vs {mine:.2f} = {rust / mine:.2f}x")


if __name__ == "__main__":
    main()
