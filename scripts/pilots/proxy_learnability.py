"""Independent check of how learnable the synth proxy data is, outside the Rust pipeline.

Decodes a `cvrl-shard synth` dataset's mp4s with PyAV, halves them to 32x32 (as the CPU
experiments' crops are), and trains a small classifier from scratch with plain PyTorch:
no augmentation, batch 32 clips of 8 frames at stride 2 (or 64 single frames), SGD 0.05
with momentum 0.9. It prints val top-1 every 50 steps. EXPERIMENTS.md ("History")
quotes its numbers; it needs `av`, which `scripts/setup-bench.sh` installs.

    .venv/bin/python scripts/pilots/proxy_learnability.py VIDEOS --model strided --target class

Models: `strided`, a 4-layer 3D CNN with a 5x7x7 stride-2 stem as in R3D and strided
3x3x3 convs; `gentle`, the same with a 5x3x3 stem of spatial stride 1; `frame2d`, a
3-layer 2D CNN on single frames (3x3 convs, max-pool). Targets: the class, or the
`object` or `motion` factor (read from the class name `<object>_<motion>`).
"""

import argparse
import os
import random
import time

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def load(root, split):
    """All videos of `root/split` as float [C, T, 32, 32] tensors, and their class names."""
    videos, names = [], []
    for cls in sorted(os.listdir(f"{root}/{split}")):
        folder = f"{root}/{split}/{cls}"
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            with av.open(f"{folder}/{f}") as c:
                frames = [x.to_ndarray(format="rgb24") for x in c.decode(video=0)]
            v = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float() / 255
            videos.append(F.avg_pool3d(v, (1, 2, 2)))
            names.append(cls)
    return videos, names


def labels(names, target):
    """Label indices of `names` for `target`, and the label names."""
    part = {"class": None, "object": 0, "motion": 1}[target]
    keys = [n if part is None else n.split("_")[part] for n in names]
    vocab = sorted(set(keys))
    return torch.tensor([vocab.index(k) for k in keys]), vocab


def conv_bn(c_in, c_out, kernel, stride, dims=3):
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    bn = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
    pad = tuple(k // 2 for k in kernel)
    return [conv(c_in, c_out, kernel, stride, pad, bias=False), bn(c_out), nn.ReLU()]


def model(kind, classes):
    if kind == "frame2d":
        layers = conv_bn(3, 32, (3, 3), 1, 2) + [nn.MaxPool2d(2)]
        layers += conv_bn(32, 64, (3, 3), 1, 2) + [nn.MaxPool2d(2)]
        layers += conv_bn(64, 128, (3, 3), 1, 2) + [nn.AdaptiveAvgPool2d(1)]
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128, classes))
    stem = conv_bn(3, 16, (5, 7, 7), (2, 2, 2)) if kind == "strided" else conv_bn(
        3, 16, (5, 3, 3), (2, 1, 1))
    layers = stem + conv_bn(16, 32, (3, 3, 3), (1, 2, 2))
    layers += conv_bn(32, 64, (3, 3, 3), (1, 2, 2)) + conv_bn(64, 128, (3, 3, 3), (1, 2, 2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(128, classes))


def sample(video, frames_only, start=None):
    """A random clip of 8 frames at stride 2 (or one frame); `start` fixes it for testing."""
    t = video.shape[1]
    if frames_only:
        return video[:, random.randrange(t) if start is None else start]
    s = random.randint(0, max(0, t - 16)) if start is None else start
    return video[:, s:s + 15:2]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("videos", help="a cvrl-shard synth output folder (with train/ and val/)")
    p.add_argument("--model", choices=["strided", "gentle", "frame2d"], default="strided")
    p.add_argument("--target", choices=["class", "object", "motion"], default="class")
    p.add_argument("--steps", type=int, default=400)
    a = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    random.seed(0)
    started = time.time()
    (train, train_names), (val, val_names) = load(a.videos, "train"), load(a.videos, "val")
    y_train, vocab = labels(train_names, a.target)
    y_val, _ = labels(val_names, a.target)
    frames_only = a.model == "frame2d"
    net = model(a.model, len(vocab))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    batch = 64 if frames_only else 32
    print(f"{len(train)} train, {len(val)} val videos, {len(vocab)} labels, "
          f"loaded in {time.time() - started:.0f} s")
    for step in range(a.steps):
        idx = random.sample(range(len(train)), batch)
        x = torch.stack([sample(train[i], frames_only) for i in idx])
        loss = F.cross_entropy(net(x), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == a.steps - 1:
            net.eval()
            with torch.no_grad():
                x = torch.stack([sample(v, frames_only, 0) for v in val])
                top1 = (net(x).argmax(1) == y_val).float().mean().item()
            net.train()
            print(f"step {step}: train loss {loss.item():.3f}, val top-1 {100 * top1:.1f} %")


if __name__ == "__main__":
    main()
