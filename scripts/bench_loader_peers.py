"""On-the-fly decoding peers for `just bench-loader` (scripts/bench-loader.sh runs this).

Each peer reads the source mp4s and builds CVRL positive pairs the way a PyTorch Dataset
would, per pair:
  1. open the video with the peer's library (1 decoder thread) and read its frame count;
  2. draw two clip starts as trainer/src/sampler.rs does (gap between starts from the
     decreasing-linear density on [0, M), M = frames - span; first start uniform in
     [0, M - gap); the pair's order random), 16 frames at stride 2 each;
  3. decode the 2 x 16 needed frames to RGB24 (the peer's own seeking);
  4. per clip: draw a crop box (area 0.3-1 of the frame, aspect 0.5-2, up to 10 tries,
     else the whole frame, as torchvision's RandomResizedCrop), one bilinear resize of the
     box to 224x224 (torch's uint8 kernel, antialias off, like the shard loader; the same
     calls as cvrl.torch.resize_clip), horizontal flip with p = 0.5: uint8 [3, 16, 224, 224]
     (frame-major memory, as resize_clip returns it).
Steps 1-4 are timed together. Step 4 is identical for every peer (torch, 1 intra-op thread).

Workers: W processes (spawned, like DataLoader workers), pairs split round-robin; each does
a warm-up pair, waits on a barrier, then runs its share; the wall time is from the barrier
to the last worker's end. Output: one tab-separated line per measurement
(`row NAME WORKERS PAIRS BEST_WALL_S PAIRS_PER_S ALL_WALLS BEST_CPU_S`, CPU = user +
system time of the workers between the barrier and their end, summed), or
(`unavailable NAME REASON`) for a peer that cannot be imported or cannot decode.
"""

import argparse
import math
import multiprocessing as mp
import os
import random
import sys
import time

CLIP_FRAMES = 16
STRIDE = 2
SPAN = (CLIP_FRAMES - 1) * STRIDE + 1
OUT = 224


def sample_pair(rng, n):
    """Start frames of the two clips, as trainer/src/sampler.rs (decreasing, base fps = fps)."""
    n = max(n, 1)
    if n <= SPAN:
        return rng.randrange(n), rng.randrange(n)
    m = n - SPAN
    gap = min(int((1.0 - math.sqrt(1.0 - rng.random())) * m), m - 1)
    first = rng.randrange(m - gap)
    a, b = first, first + gap
    return (a, b) if rng.random() < 0.5 else (b, a)


def clip_indices(start, n):
    return [(start + k * STRIDE) % n for k in range(CLIP_FRAMES)]


def crop_box(rng, h, w):
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(0.3, 1.0)
        aspect = rng.uniform(0.5, 2.0)
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw
    return 0, 0, h, w


def augment(torch, rng, frames):
    """frames: uint8 tensor [T, H, W, 3] -> uint8 [3, T, 224, 224] (a view of frame-major
    memory). The resize is ``cvrl.torch.resize_clip``'s (torch's uint8 bilinear kernel on
    channels-last frames), written out here so that the peers do not import cvrl."""
    import torch.nn.functional as F

    t, h, w, _ = frames.shape
    y, x, ch, cw = crop_box(rng, h, w)
    box = frames[:, y : y + ch, x : x + cw, :].permute(0, 3, 1, 2)
    box = box.contiguous(memory_format=torch.channels_last)
    out = F.interpolate(box, size=(OUT, OUT), mode="bilinear", align_corners=False, antialias=False)
    out = out.permute(1, 0, 2, 3)
    return out.flip(-1) if rng.random() < 0.5 else out


# --- peers: open(path) -> (frame count, reader); reader(indices) -> uint8 tensor [T,H,W,3] ---


def peer_decord(torch):
    import decord

    decord.bridge.set_bridge("native")

    def open_video(path):
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        return len(vr), lambda idx: torch.from_numpy(vr.get_batch(idx).asnumpy())

    return open_video


def peer_pyav(torch):
    import av
    import numpy as np

    def open_video(path):
        container = av.open(path)
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        n = stream.frames
        rate = stream.average_rate
        tb = stream.time_base
        t0 = stream.start_time or 0

        def index_of(frame):
            return int(round(float((frame.pts - t0) * tb * rate)))

        def read(idx):
            # Seek to the keyframe at or before the first needed frame, decode forward.
            want = sorted(set(idx))
            target = t0 + int(want[0] / rate / tb)
            container.seek(target, stream=stream, backward=True, any_frame=False)
            got = {}
            for frame in container.decode(stream):
                i = index_of(frame)
                if i in want:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= want[-1]:
                    break
            missing = [i for i in want if i not in got]
            if missing:
                raise RuntimeError(f"{path}: frames {missing[:3]} not decoded")
            return torch.from_numpy(np.stack([got[i] for i in idx]))

        read.close = container.close
        return n, read

    return open_video


def peer_torchcodec(torch):
    from torchcodec.decoders import VideoDecoder

    def open_video(path):
        dec = VideoDecoder(
            path, device="cpu", num_ffmpeg_threads=1, dimension_order="NHWC", seek_mode="approximate"
        )
        n = dec.metadata.num_frames
        return n, lambda idx: dec.get_frames_at(indices=idx).data

    return open_video


PEERS = {"decord": peer_decord, "pyav": peer_pyav, "torchcodec": peer_torchcodec}


def make_pair(torch, open_video, path, seed):
    rng = random.Random(seed)
    n, read = open_video(path)
    out = []
    for start in sample_pair(rng, n):
        frames = read(clip_indices(start, n))
        assert frames.shape[0] == CLIP_FRAMES and frames.dtype == torch.uint8, frames.shape
        out.append(augment(torch, rng, frames))
    close = getattr(read, "close", None)
    if close:
        close()
    return out


def worker(peer, videos, jobs, barrier, results):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    try:
        open_video = PEERS[peer](torch)
        make_pair(torch, open_video, videos[jobs[0][0]], -1)  # warm-up
    except Exception as e:  # noqa: BLE001: any failure makes the peer unavailable
        results.put(("error", f"{type(e).__name__}: {e}".replace("\n", " ")[:300]))
        barrier.abort()
        return
    try:
        barrier.wait()
    except Exception:  # noqa: BLE001: another worker failed
        return
    t0, c0 = time.monotonic(), time.process_time()
    for video, seed in jobs:
        make_pair(torch, open_video, videos[video], seed)
    results.put(("ok", t0, time.monotonic(), time.process_time() - c0))


def measure(peer, videos, pairs, workers, seed):
    ctx = mp.get_context("spawn")
    order = list(range(len(videos)))
    random.Random(seed).shuffle(order)
    jobs = [(order[i % len(videos)], seed * 1_000_003 + i) for i in range(pairs)]
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(peer, videos, jobs[w::workers], barrier, results))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    got = [results.get() for _ in procs]
    for p in procs:
        p.join()
    errors = [g[1] for g in got if g[0] == "error"]
    if errors:
        raise RuntimeError(errors[0])
    wall = max(g[2] for g in got) - min(g[1] for g in got)
    return wall, sum(g[3] for g in got)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+", help="source mp4 files")
    ap.add_argument("--pairs", type=int, default=48, help="clip pairs timed per measurement")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--reps", type=int, default=2, help="measurements per row; fastest kept")
    ap.add_argument("--peers", nargs="+", default=list(PEERS))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for peer in args.peers:
        for w in sorted(set(args.workers)):
            walls, cpus = [], []
            try:
                for rep in range(args.reps):
                    walls.append(measure(peer, args.videos, args.pairs, w, args.seed))
                    cpus.append(walls[-1][1])
                    walls[-1] = walls[-1][0]
            except Exception as e:  # noqa: BLE001
                print(f"unavailable\t{peer}\t{e}", flush=True)
                print(f"bench_loader_peers: {peer}: unavailable: {e}", file=sys.stderr)
                break
            best = min(walls)
            walls_s = ",".join(f"{x:.3f}" for x in walls)
            cpu = min(cpus)
            print(f"row\t{peer}\t{w}\t{args.pairs}\t{best:.4f}\t{args.pairs / best:.2f}\t{walls_s}\t{cpu:.3f}", flush=True)
            print(
                f"bench_loader_peers: {peer} x{w}: {args.pairs / best:.2f} pairs/s, "
                f"{args.pairs / cpu:.2f} pairs per CPU second",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
