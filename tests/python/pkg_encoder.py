#!/usr/bin/env python3
"""``cvrl.torch.load_encoder`` against ``cvrl-eval``'s features, for tests/tests/python_pkg.rs.

    pkg_encoder.py RUN_DIR CACHE_DIR SET_DIR FRAMES TEMPORAL SPATIAL

CACHE_DIR is the feature cache of a ``cvrl-eval`` run on the rgb24 set SET_DIR at its
short side (so its test views are stored pixels, not resized), with TEMPORAL x SPATIAL
test views and one training clip per video: its test features ``[N, TEMPORAL x SPATIAL,
D]`` are the file whose second dimension is the view count. The same views, cut by
``CvrlClips``, go through the encoder ``load_encoder`` builds; the pooled features must
agree within 1e-4 of the largest feature's magnitude. Prints the largest difference.
"""

import glob
import sys

import torch

from cvrl.torch import CvrlClips, R3D, R3DConfig, load_encoder
from cvrl.torch.r3d import read_safetensors


def main(run, cache, set_dir, frames, temporal, spatial):
    frames, temporal, spatial = int(frames), int(temporal), int(spatial)
    views = temporal * spatial
    cached = [read_safetensors(p)["features"] for p in glob.glob(f"{cache}/*.safetensors")]
    rust = [f for f in cached if f.shape[1] == views]
    assert len(rust) == 1, [f.shape for f in cached]
    rust = rust[0]

    model = load_encoder(run)
    assert not model.training, "load_encoder returns a model in eval mode"
    ds = CvrlClips(set_dir, frames=frames, stride=2, temporal_views=temporal,
                   spatial_crops=spatial)
    assert len(ds) == rust.shape[0] * views
    clips = torch.stack([ds[k][0] for k in range(len(ds))])
    with torch.no_grad():
        ours = model(clips).view(rust.shape)
    diff = (ours - rust).abs().max().item()
    scale = max(1.0, rust.abs().max().item())
    print(f"{model.config}: features {tuple(rust.shape)}, largest |feature| {scale:.4g}, "
          f"largest difference {diff:.3g}")
    assert diff <= 1e-4 * scale, f"features differ by {diff} (scale {scale})"
    # A float clip in [0, 1] is the same input as its uint8 pixels.
    with torch.no_grad():
        assert torch.allclose(model(clips[:2].float() / 255), ours.view(-1, ours.shape[-1])[:2])

    # The reference R3D-50's published size (TF Model Garden README): 31.7M parameters.
    n = sum(p.numel() for p in R3D(R3DConfig(depth=50)).parameters())
    assert abs(n / 31.7e6 - 1) < 0.01, f"R3D-50 has {n} parameters"


if __name__ == "__main__":
    main(*sys.argv[1:])
