"""Clip transforms on ``uint8`` ``[C, T, H, W]`` tensors that apply one set of spatial
parameters to every frame of a clip (CVRL's temporally consistent augmentation), for the
``transform`` argument of ``CvrlPairs`` and ``CvrlClips``.

A transform is called as ``transform(clip, generator)`` with a ``torch.Generator`` seeded
for that sample, and draws all its randomness from it, so a dataset stays deterministic
from its seed whatever the worker count. A transform that starts with a crop (and a flip)
can also offer ``read_box(height, width, generator) -> (box, flip, finish)``: the datasets
then read only the box's pixels, mirrored when ``flip``, and call ``finish`` on them, with
the same result.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F


def resize_clip(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resizes every frame of ``clip`` (``uint8`` ``[C, T, H, W]``) to ``size x size``,
    bilinear with half-pixel centres and no antialiasing (TF's ``resize``, which cvrl's
    augmentation follows): ``uint8`` ``[C, T, size, size]``, a view of frame-major
    ``[T, size, size, C]`` memory like the datasets' clips (a DataLoader's collate copies
    it into the batch; ``.contiguous()`` makes a channel-major copy).

    The resize runs in torch's ``uint8`` kernel on channels-last frames: its fixed-point
    weights put every pixel within one grey level of the exact resize rounded to ``uint8``
    (about one in five is one off, on random clips; formats/python/tests/test_transforms.py),
    at about 4x the speed of resizing in float.
    """
    frames = clip.permute(1, 0, 2, 3).contiguous(memory_format=torch.channels_last)
    out = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=False)
    return out.permute(1, 0, 2, 3)


class RandomResizedCropFlip:
    """CVRL's spatial crop and flip for a whole clip: a box of ``scale`` of the frame's area
    and aspect ratio (width / height) in ``ratio``, both drawn uniformly (TF's
    ``sample_distorted_bounding_box``, as cvrl's trainer draws it; the whole frame after
    ``attempts`` misses), flipped horizontally with probability ``flip_p`` and resized to
    ``size x size`` by ``resize_clip``. The same box and flip serve every frame. (Flipping
    before the resize lets a dataset read the box mirrored, instead of copying the resized
    clip once more; the resize is symmetric, so the order changes no pixel by more than the
    one level of the resize's own rounding.)

    Input and output: ``uint8`` ``[C, T, H, W]``. Colour jitter, grayscale and blur are left
    to the caller, who can chain them after this.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (0.5, 2.0),
        flip_p: float = 0.5,
        attempts: int = 100,
    ):
        if size < 1 or not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"bad crop settings: size {size}, scale {scale}, ratio {ratio}")
        self.size, self.scale, self.ratio = size, scale, ratio
        self.flip_p, self.attempts = flip_p, attempts

    def params(
        self, height: int, width: int, generator: Optional[torch.Generator] = None
    ) -> tuple[int, int, int, int, bool]:
        """Draws ``(top, left, box height, box width, flip)`` for frames of this size."""

        def uniform(lo: float, hi: float) -> float:
            return lo + (hi - lo) * torch.rand((), generator=generator).item()

        box = (0, 0, height, width)
        for _ in range(self.attempts):
            area = uniform(*self.scale) * height * width
            aspect = uniform(*self.ratio)
            w = int(round((area * aspect) ** 0.5))
            h = int(round((area / aspect) ** 0.5))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                box = (top, left, h, w)
                break
        flip = torch.rand((), generator=generator).item() < self.flip_p
        return (*box, flip)

    def read_box(
        self, height: int, width: int, generator: Optional[torch.Generator] = None
    ) -> tuple[tuple[int, int, int, int], bool, Callable[[torch.Tensor], torch.Tensor]]:
        """The transform split at the read, for datasets that read only the box: draws the
        parameters for ``height x width`` frames and returns the box ``(top, left, height,
        width)``, whether to mirror it, and ``finish``, which resizes a clip already cut to
        the box and mirrored. ``self(clip, generator)`` is ``finish`` of that cut."""
        top, left, h, w, flip = self.params(height, width, generator)
        return (top, left, h, w), flip, lambda box: resize_clip(box, self.size)

    def __call__(
        self, clip: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        _, _, height, width = clip.shape
        (top, left, h, w), flip, finish = self.read_box(height, width, generator)
        box = clip[:, :, top : top + h, left : left + w]
        return finish(box.flip(-1) if flip else box)

    def __repr__(self) -> str:
        return (f"RandomResizedCropFlip(size={self.size}, scale={self.scale}, "
                f"ratio={self.ratio}, flip_p={self.flip_p})")
