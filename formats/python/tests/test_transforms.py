"""``cvrl.torch.transforms.resize_clip`` against a resize written here from TF's rule
(bilinear, half-pixel centres, no antialiasing) in float64 with numpy: every pixel within
one grey level of it, on random and smooth clips, down- and upsampling, whatever the
input's memory layout; and an exact copy when the size does not change.

    python formats/python/tests/test_transforms.py      # or: pytest formats/python/tests
"""

import numpy as np
import torch

from cvrl.torch import RandomResizedCropFlip, resize_clip


def reference(clip: np.ndarray, size: int) -> np.ndarray:
    """TF's ``resize(method="bilinear", antialias=False)`` of ``[C, T, H, W]`` frames,
    rounded to ``uint8``: source coordinate ``(i + 0.5) * in / out - 0.5``, clamped to the
    frame's edge pixels."""

    def taps(n_in: int):
        src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0)
        lo = np.floor(src).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    (y0, y1, wy), (x0, x1, wx) = taps(clip.shape[2]), taps(clip.shape[3])
    f = clip.astype(np.float64)
    rows = f[:, :, y0] * (1 - wy)[:, None] + f[:, :, y1] * wy[:, None]
    out = rows[..., x0] * (1 - wx) + rows[..., x1] * wx
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def clips(g: torch.Generator):
    """(name, uint8 [3, T, H, W] clip) in the layouts a transform sees: cvrl's reader gives
    frame-major memory (a permuted view), cropped; a caller may hand a channel-major one."""
    for h, w in [(256, 456), (120, 90), (31, 47), (224, 224), (60, 400)]:
        noise = torch.randint(0, 256, (4, h, w, 3), dtype=torch.uint8, generator=g)
        coarse = torch.randint(0, 256, (4, 3, h // 8 + 2, w // 8 + 2), generator=g).float()
        smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
        smooth = smooth.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        for name, frames in (("noise", noise), ("smooth", smooth)):
            view = frames.permute(3, 0, 1, 2)
            yield f"{name} {h}x{w} frame-major", view
            yield f"{name} {h}x{w} channel-major", view.contiguous()
            yield f"{name} {h}x{w} cropped", view[:, :, h // 4 :, 1 : w - 1]


def test_resize_clip_is_within_one_level_of_tf_bilinear():
    g = torch.Generator().manual_seed(5)
    off = total = 0
    for name, clip in clips(g):
        for size in (224, 112, 37, 300):
            got = resize_clip(clip, size)
            assert got.shape == (3, clip.shape[1], size, size) and got.dtype == torch.uint8
            assert got.permute(1, 2, 3, 0).is_contiguous(), name
            diff = np.abs(got.numpy().astype(np.int16) - reference(clip.numpy(), size))
            assert diff.max() <= 1, f"{name} -> {size}: off by {diff.max()} levels"
            off, total = off + int((diff > 0).sum()), total + diff.size
    # Rounding differences, not a shifted grid: most pixels are exact.
    assert off < total // 2, f"{off} of {total} pixels off by one"


def test_resize_to_the_same_size_is_a_copy():
    clip = torch.randint(0, 256, (3, 2, 224, 224), dtype=torch.uint8)
    assert torch.equal(resize_clip(clip, 224), clip)


def test_crop_flip_keeps_within_one_level_of_cropping_the_reference():
    g = torch.Generator().manual_seed(9)
    clip = torch.randint(0, 256, (2, 96, 128, 3), dtype=torch.uint8, generator=g)
    clip = clip.permute(3, 0, 1, 2)
    crop = RandomResizedCropFlip(32)
    for seed in range(10):
        top, left, h, w, flip = crop.params(96, 128, torch.Generator().manual_seed(seed))
        got = crop(clip, torch.Generator().manual_seed(seed)).numpy().astype(np.int16)
        want = reference(clip[:, :, top : top + h, left : left + w].numpy(), 32)
        want = want[..., ::-1] if flip else want
        assert np.abs(got - want).max() <= 1, f"seed {seed}"


if __name__ == "__main__":
    for test in [v for k, v in dict(globals()).items() if k.startswith("test_")]:
        test()
        print(f"ok {test.__name__}")
