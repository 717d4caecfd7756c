"""Independent check of contrastive learning on the synth proxy, outside the Rust pipeline.

SimCLR in plain PyTorch on a `cvrl-shard synth` dataset's mp4s (decoded and halved to
32x32 by `proxy_learnability.py`'s loader): two frames (or 8-frame clips) of a video, the
gap drawn from the decreasing distribution, each with a random resized crop, flip, colour
jitter of strength `--jitter` (brightness, contrast, saturation; a channel shuffle with
probability jitter/2 stands in for hue) and grayscale with probability `--gray`. A 2D or
3D CNN from `proxy_learnability.py`, a 2-layer head, InfoNCE over the 2N-2 other views
(both directions summed, as in cvrl-train). Prints the loss and val kNN (k = 20) on the
class and on the object factor every 100 steps. EXPERIMENTS.md ("History")
quotes it.

    .venv/bin/python scripts/pilots/proxy_simclr.py VIDEOS --model frame2d --jitter 0.4 --gray 0.5
"""

import argparse
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_learnability as pl  # noqa: E402


def grey(c):
    return (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])[None].expand_as(c)


def augment(x, a):
    """One view of `x` ([C, H, W] or [C, T, H, W] in [0, 1]); parameters drawn once."""
    h_img, w_img = x.shape[-2:]
    area = random.uniform(a.area, 1) * h_img * w_img
    aspect = math.exp(random.uniform(math.log(0.5), math.log(2)))
    w = min(w_img, round(math.sqrt(area * aspect)))
    h = min(h_img, round(math.sqrt(area / aspect)))
    i, j = random.randint(0, h_img - h), random.randint(0, w_img - w)
    c = x[..., i:i + h, j:j + w]
    frames = c[None] if c.dim() == 3 else c.permute(1, 0, 2, 3)
    frames = F.interpolate(frames, size=(h_img, w_img), mode="bilinear", align_corners=False)
    c = frames[0] if x.dim() == 3 else frames.permute(1, 0, 2, 3)
    if random.random() < 0.5:
        c = c.flip(-1)
    s = a.jitter
    if s > 0 and random.random() < 0.8:
        c = c * random.uniform(max(0, 1 - s), 1 + s)
        c = (c - c.mean()) * random.uniform(1 - s, 1 + s) + c.mean()
        c = (c - grey(c)) * random.uniform(1 - s, 1 + s) + grey(c)
        if random.random() < s / 2:
            c = c[torch.randperm(3)]
    if random.random() < a.gray:
        c = grey(c)
    return c.clamp(0, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("videos", help="a cvrl-shard synth output folder (with train/ and val/)")
    p.add_argument("--model", choices=["strided", "gentle", "frame2d"], default="frame2d")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--jitter", type=float, default=0.8, help="colour jitter strength")
    p.add_argument("--gray", type=float, default=0.2, help="grayscale probability")
    p.add_argument("--area", type=float, default=0.3, help="smallest crop area")
    p.add_argument("--same", action="store_true", help="both views from one start")
    a = p.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    random.seed(0)
    train, train_names = pl.load(a.videos, "train")
    val, val_names = pl.load(a.videos, "val")
    frames_only = a.model == "frame2d"
    span = 1 if frames_only else 16

    def clip(v, s):
        return v[:, s] if frames_only else v[:, s:s + 15:2]

    def pair(v):
        room = max(0, v.shape[1] - span)
        gap = 0 if a.same else int(room * (1 - math.sqrt(1 - random.random())))
        s = random.randint(0, room - gap)
        return clip(v, s), clip(v, s + gap)

    enc = pl.model(a.model, 10)
    enc[-1] = nn.Identity()
    head = nn.Sequential(nn.Linear(128, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 64))
    opt = torch.optim.SGD([*enc.parameters(), *head.parameters()], lr=a.lr, momentum=0.9,
                          weight_decay=1e-6)
    targets = [(pl.labels(train_names, t)[0], pl.labels(val_names, t)[0])
               for t in ("class", "object")]

    def knn():
        enc.eval()
        with torch.no_grad():
            def feats(vs):
                return F.normalize(torch.cat([
                    enc(torch.stack([clip(v, max(0, v.shape[1] // 2 - 8)) for v in vs[k:k + 100]]))
                    for k in range(0, len(vs), 100)]), dim=1)
            nearest = (feats(val) @ feats(train).T).topk(20, dim=1).indices
        enc.train()
        return [round(100 * (torch.mode(yt[nearest], dim=1).values == yv).float().mean().item(), 1)
                for yt, yv in targets]

    print("random init: val kNN class, object", knn(), flush=True)
    started = time.time()
    n = a.batch
    for step in range(a.steps):
        pairs = [pair(train[i]) for i in random.sample(range(len(train)), n)]
        x = torch.stack([augment(p[0], a) for p in pairs] + [augment(p[1], a) for p in pairs])
        z = F.normalize(head(enc(x)), dim=1)
        sim = (z @ z.T / a.tau).fill_diagonal_(-1e9)
        positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
        loss = 2 * F.cross_entropy(sim, positive)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == a.steps - 1:
            print(f"step {step}: loss {loss.item():.3f} (chance {2 * math.log(2 * n - 1):.2f}), "
                  f"val kNN class, object {knn()}, {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
