"""The PyTorch half of `just bench-train`: one training step of CVRL in PyTorch eager, built
from the layout trainer/src/model/r3d.rs documents (not from our code), timed on random
clips the way trainer/examples/bench_step.rs times the Rust trainer.

The step: u8 clips [2B, 3, T, S, S] -> float / 255 -> R3D -> projection head (3 x Dense-BN-
ReLU, Dense) -> InfoNCE (the reference's two-direction NT-Xent, tau 0.1) -> backward ->
torch.optim.SGD (momentum 0.9, weight decay 1e-6 on conv and dense kernels only) -> loss
.item(). Prints one JSON object like bench_step's.

    .venv/bin/python scripts/bench-train.py --base-width 32 --steps 5
"""

import argparse
import ctypes
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
TEMPORAL = [1, 1, 3, 3]
SPATIAL_STRIDE = [1, 2, 2, 2]


def conv_bn(c_in, c_out, kernel, stride):
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel, stride, pad, bias=False),
        nn.BatchNorm3d(c_out, eps=1e-5, momentum=0.1),
    )


class Block(nn.Module):
    def __init__(self, bottleneck, c_in, width, t, s):
        super().__init__()
        stride = (1, s, s)
        if bottleneck:
            c_out = width * 4
            self.a = conv_bn(c_in, width, (t, 1, 1), (1, 1, 1))
            self.b = conv_bn(width, width, (1, 3, 3), stride)
            self.c = conv_bn(width, c_out, (1, 1, 1), (1, 1, 1))
        else:
            c_out = width
            self.a = conv_bn(c_in, width, (t, 3, 3), stride)
            self.b = conv_bn(width, width, (1, 3, 3), (1, 1, 1))
            self.c = None
        self.shortcut = conv_bn(c_in, c_out, (1, 1, 1), stride) if (c_in != c_out or s != 1) else None
        self.c_out = c_out

    def forward(self, x):
        y = self.b(F.relu(self.a(x)))
        if self.c is not None:
            y = self.c(F.relu(y))
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class R3D(nn.Module):
    def __init__(self, depth, base_width, stem="reference"):
        super().__init__()
        bottleneck = depth >= 50
        # reference: 5x7x7 at spatial stride 2; small: 5x3x3 at spatial stride 1 (r3d.rs Stem).
        spatial_kernel, spatial_stride = (7, 2) if stem == "reference" else (3, 1)
        self.stem = conv_bn(3, base_width, (5, spatial_kernel, spatial_kernel),
                            (2, spatial_stride, spatial_stride))
        layers, c_in = [], base_width
        for i, n in enumerate(BLOCKS[depth]):
            width = base_width * 2**i
            for j in range(n):
                block = Block(bottleneck, c_in, width, TEMPORAL[i], SPATIAL_STRIDE[i] if j == 0 else 1)
                layers.append(block)
                c_in = block.c_out
        self.stages = nn.Sequential(*layers)
        self.feature_dim = c_in

    def forward(self, x):
        x = F.max_pool3d(F.relu(self.stem(x)), (1, 3, 3), (1, 2, 2), (0, 1, 1))
        return self.stages(x).mean(dim=(2, 3, 4))


def head(c_in, hidden=2048, layers=3, out=128):
    mods = []
    for _ in range(layers):
        mods += [nn.Linear(c_in, hidden), nn.BatchNorm1d(hidden, eps=1e-5, momentum=0.003), nn.ReLU()]
        c_in = hidden
    return nn.Sequential(*mods, nn.Linear(c_in, out))


def info_nce(z_a, z_b, tau=0.1):
    a, b = F.normalize(z_a.float(), dim=1), F.normalize(z_b.float(), dim=1)
    n = a.shape[0]
    labels = torch.arange(n, device=a.device)
    mask = torch.eye(n, device=a.device) * 1e9
    ab = a @ b.T / tau
    aa = a @ a.T / tau - mask
    bb = b @ b.T / tau - mask
    return F.cross_entropy(torch.cat([ab, aa], 1), labels) + F.cross_entropy(torch.cat([ab.T, bb], 1), labels)


def keep_freed_memory():
    """What cvrl-train does at start (trainer/src/device.rs, keep_freed_host_memory): glibc's
    M_MMAP_THRESHOLD (-3) at 32 MiB and M_TRIM_THRESHOLD (-1) at its largest."""
    libc = ctypes.CDLL("libc.so.6")
    if not (libc.mallopt(-3, 32 << 20) == 1 and libc.mallopt(-1, 2**31 - 1) == 1):
        raise SystemExit("--keep-freed-memory: glibc did not take the setting")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--base-width", type=int, default=32)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--stem", choices=["reference", "small"], default="reference")
    p.add_argument("--head-hidden-dim", type=int, default=2048)
    p.add_argument("--embedding-dim", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="glibc mmap threshold 32 MiB and no trimming, as cvrl-train sets them")
    args = p.parse_args()
    if args.keep_freed_memory:
        keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    backbone = R3D(args.depth, args.base_width, args.stem)
    projection = head(backbone.feature_dim, args.head_hidden_dim, out=args.embedding_dim)
    model = nn.Sequential(backbone, projection).to(dev)
    fmt = torch.channels_last_3d if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    kernels = [q for name, q in model.named_parameters() if q.dim() > 1]
    others = [q for name, q in model.named_parameters() if q.dim() <= 1]
    opt = torch.optim.SGD(
        [{"params": kernels, "weight_decay": 1e-6}, {"params": others, "weight_decay": 0.0}],
        lr=1e-3, momentum=0.9,
    )
    b, t, s = args.batch_size, args.frames, args.crop
    gen = torch.Generator().manual_seed(1)
    views = [torch.randint(0, 256, (2 * b, 3, t, s, s), dtype=torch.uint8, generator=gen)
             for _ in range(args.warmup + args.steps)]
    cuda = dev.type == "cuda"
    times, cpu_times = [], []
    for k, clips in enumerate(views):
        if cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        x = clips.to(dev, non_blocking=True).float().div_(255).contiguous(memory_format=fmt)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            z = model(x)
        loss = info_nce(*z.chunk(2))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        value = loss.item()
        if k >= args.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    print(json.dumps({
        "impl": "pytorch", "device": str(dev), "torch": torch.__version__,
        "model": f"r3d{args.depth} w{args.base_width}" + (" small stem" if args.stem == "small" else ""),
        "channels_last": args.channels_last,
        "keep_freed_memory": args.keep_freed_memory,
        "clips": 2 * b, "input": [t, s, s], "threads": torch.get_num_threads(),
        "step_s": times, "cpu_s": cpu_times, "last_loss": value,
    }))


if __name__ == "__main__":
    main()
