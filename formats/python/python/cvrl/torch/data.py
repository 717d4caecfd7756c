"""Map-style datasets over cvrl shard sets.

Both datasets open the set lazily, once per process: a DataLoader worker, forked or
spawned, opens its own memory maps instead of sharing the parent's reader, and a dataset
pickles as its settings. Items depend only on ``(seed, epoch, index)``, never on the worker
that builds them, so any ``num_workers`` gives the same batches.

Clips come out as ``uint8`` ``[C, T, H, W]`` RGB tensors at the stored size: views of
frame-major ``[T, H, W, C]`` memory (what the reader writes; ``.contiguous()`` makes a
channel-major copy). Videos of a set may differ in size, so batching needs a ``transform``
that makes them one size, e.g. ``RandomResizedCropFlip``.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from .. import _cvrl
from ..shards import PathLike, ShardSet
from .transforms import resize_clip

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class _PerProcess:
    """A ``ShardSet`` opened in the process that uses it (reopened after a fork)."""

    def __init__(self, path: Union[PathLike, Sequence[PathLike]]):
        if isinstance(path, (str, os.PathLike)):
            path = [path]
        self.paths = [os.fspath(p) for p in path]
        self._set: Optional[ShardSet] = None
        self._pid = -1

    def get(self) -> ShardSet:
        if self._set is None or self._pid != os.getpid():
            self._set = ShardSet(self.paths)
            self._pid = os.getpid()
        return self._set

    def __getstate__(self):
        return {"paths": self.paths, "_set": None, "_pid": -1}


def _clip_tensor(frames) -> torch.Tensor:
    """``[T, H, W, 3]`` numpy -> ``[3, T, H, W]`` tensor view."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)


class CvrlPairs(Dataset):
    """CVRL positive pairs: item ``i`` is ``(clip_a, clip_b)``, two clips of video ``i``.

    The clips are placed by cvrl's sampler (the trainer's ``sample_pair``): ``frames``
    frames ``stride`` apart, counted at ``base_fps`` (a video stored at another rate steps
    proportionally, so clips cover the same time), the gap between their starts drawn from
    ``interval`` (``decreasing``, ``uniform``, ``increasing``, ``power:P`` or ``same``);
    short videos loop. The draw is the one cvrl's loader makes for ``(seed, epoch,
    position i)``.

    ``transform(clip, generator)``, when given, is applied to each clip with one
    ``torch.Generator`` per item, seeded from ``(seed, epoch, i)``: e.g.
    ``RandomResizedCropFlip(112)``. Without one, the clips are the stored frames as
    ``uint8`` ``[3, T, H, W]`` RGB.

    ``set_epoch(e)`` before each epoch draws new pairs (as ``DistributedSampler.set_epoch``);
    a DataLoader without persistent workers copies the dataset into its workers at the start
    of each epoch, so they see it.
    """

    def __init__(
        self,
        path: Union[PathLike, Sequence[PathLike]],
        frames: int = 16,
        stride: int = 2,
        interval: str = "decreasing",
        *,
        base_fps: float = 25.0,
        seed: int = 0,
        transform: Optional[Transform] = None,
    ):
        self._sets = _PerProcess(path)
        self.frames, self.stride, self.interval = frames, stride, interval
        self.base_fps, self.seed, self.transform = base_fps, seed, transform
        self.epoch = 0
        shards = self._sets.get()
        self._len = len(shards)
        # Checks the clip settings and the interval name once, here, not in a worker.
        if self._len:
            self._indices(shards, 0)

    def __len__(self) -> int:
        return self._len

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def shards(self) -> ShardSet:
        """The set, opened in this process."""
        return self._sets.get()

    def _indices(self, shards: ShardSet, i: int):
        return shards._set.pair_indices(i, self.frames, self.stride, self.base_fps,
                                        self.interval, self.seed, self.epoch, i)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        shards = self._sets.get()
        i = shards.video(i)
        a, b = shards.read_clips(i, self._indices(shards, i))
        a, b = _clip_tensor(a), _clip_tensor(b)
        if self.transform is not None:
            g = torch.Generator().manual_seed(_cvrl.sample_seed(self.seed, self.epoch, i))
            a, b = self.transform(a, g), self.transform(b, g)
        return a, b


def spatial_crops(width: int, height: int, n: int) -> list[tuple[int, int, int]]:
    """``n`` square boxes ``(left, top, side)`` with the side of the frame's short side,
    spread evenly from one end of the long side to the other (one box: the centre): the
    spatial test views of ``cvrl-eval``."""
    side = min(width, height)
    slack = max(width, height) - side

    def at(i: int) -> int:
        return slack // 2 if n <= 1 else (i * slack) // (n - 1)

    return [(at(i), 0, side) if width >= height else (0, at(i), side) for i in range(n)]


class CvrlClips(Dataset):
    """Labelled evaluation clips: ``temporal_views`` evenly spaced clips per video (the
    first at the start, the last at the end) times ``spatial_crops`` square crops of the
    full short side spread along the long side, in that order, as ``cvrl-eval`` cuts its
    test views (the reference: 10 x 3). Item ``k`` is ``(clip, label)``: view ``k %
    views`` of video ``k // views``, a ``uint8`` ``[3, T, S, S]`` tensor (``S`` the short
    side, or ``size`` when given) and the label index into ``classes`` (-1 if unlabelled).

    ``size`` resizes with ``resize_clip``. ``cvrl-eval`` resizes the stored planes
    directly, so for ``yuv420p`` sets or any resize its pixels differ from these by a few
    levels; an ``rgb24`` set evaluated at its short side gives the same pixels.
    ``transform(clip, generator)`` as in ``CvrlPairs`` (seeded from ``(seed, 0, k)``).
    """

    def __init__(
        self,
        path: Union[PathLike, Sequence[PathLike]],
        frames: int = 16,
        stride: int = 2,
        *,
        base_fps: float = 25.0,
        temporal_views: int = 10,
        spatial_crops: int = 3,
        size: Optional[int] = None,
        seed: int = 0,
        transform: Optional[Transform] = None,
    ):
        if temporal_views < 1 or spatial_crops < 1:
            raise ValueError("at least one temporal view and one spatial crop are needed")
        self._sets = _PerProcess(path)
        self.frames, self.stride, self.base_fps = frames, stride, base_fps
        self.temporal_views, self.spatial_crops = temporal_views, spatial_crops
        self.size, self.seed, self.transform = size, seed, transform
        shards = self._sets.get()
        self._videos = len(shards)
        if self._videos:
            shards._set.view_indices(0, frames, stride, base_fps, temporal_views)

    @property
    def views(self) -> int:
        """Views per video."""
        return self.temporal_views * self.spatial_crops

    @property
    def shards(self) -> ShardSet:
        return self._sets.get()

    @property
    def classes(self) -> list[str]:
        return self.shards.classes

    def __len__(self) -> int:
        return self._videos * self.views

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        if not 0 <= k < len(self):
            raise IndexError(f"clip {k} out of range: {len(self)} clips")
        shards = self._sets.get()
        video, view = divmod(k, self.views)
        t, s = divmod(view, self.spatial_crops)
        indices = shards._set.view_indices(video, self.frames, self.stride, self.base_fps,
                                           self.temporal_views)[t]
        h, w = shards.frame_size(video)
        left, top, side = spatial_crops(w, h, self.spatial_crops)[s]
        frames = shards.read_frames(video, indices)
        clip = _clip_tensor(frames)[:, :, top : top + side, left : left + side]
        if self.size is not None and self.size != side:
            clip = resize_clip(clip, self.size)
        if self.transform is not None:
            g = torch.Generator().manual_seed(_cvrl.sample_seed(self.seed, 0, k))
            clip = self.transform(clip, g)
        return clip, shards.label(video)
