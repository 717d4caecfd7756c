"""Map-style datasets over cvrl shard sets.

Both datasets open the set lazily, once per process: a DataLoader worker, forked or
spawned, opens its own memory maps instead of sharing the parent's reader, and a dataset
pickles as its settings. Items depend only on ``(seed, epoch, index)``, never on the worker
that builds them, so any ``num_workers`` gives the same batches.

Clips come out as ``uint8`` ``[C, T, H, W]`` RGB tensors at the stored size: views of
frame-major ``[T, H, W, C]`` memory (what the reader writes; ``.contiguous()`` makes a
channel-major copy). Videos of a set may differ in size, so batching needs a ``transform``
that makes them one size, e.g. ``RandomResizedCropFlip``; ``collate`` batches the clips
without changing their layout.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from .. import _cvrl
from ..shards import PathLike, ShardSet
from . import shared
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
    ``RandomResizedCropFlip(112)``. A transform with ``read_box`` (as that one) gets only
    its crop box read, converted and mirrored: the same pixels at less cost. Without a
    transform, the clips are the stored frames as ``uint8`` ``[3, T, H, W]`` RGB.

    ``set_epoch(e)`` before each epoch draws new pairs (as ``DistributedSampler.set_epoch``);
    a DataLoader without persistent workers copies the dataset into its workers at the start
    of each epoch, so they see it.

    ``shared_batches``: DataLoader workers that batch with ``collate`` send their batches
    through shared memory the dataset keeps for reuse (``cvrl.torch.shared``; it
    holds the memory of the most batches in flight at once until the dataset goes).
    ``False``: a fresh shared-memory file per batch, as torch sends them.
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
        shared_batches: bool = True,
    ):
        self._sets = _PerProcess(path)
        self._region = shared.Region() if shared_batches else None
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
        indices = self._indices(shards, i)
        if self.transform is None:
            a, b = shards.read_clips(i, indices)
            return _clip_tensor(a), _clip_tensor(b)
        g = torch.Generator().manual_seed(_cvrl.sample_seed(self.seed, self.epoch, i))
        if hasattr(self.transform, "read_box"):
            # Reads only the crop boxes, mirrored as drawn (in the order the plain calls
            # would draw them).
            h, w = shards.frame_size(i)
            (box_a, flip_a, finish_a), (box_b, flip_b, finish_b) = (
                self.transform.read_box(h, w, g) for _ in range(2))
            a, b = shards.read_clips(i, indices, boxes=[box_a, box_b], flips=[flip_a, flip_b])
            return finish_a(_clip_tensor(a)), finish_b(_clip_tensor(b))
        a, b = shards.read_clips(i, indices)
        return self.transform(_clip_tensor(a), g), self.transform(_clip_tensor(b), g)


def collate(batch):
    """``collate_fn`` for a DataLoader over ``CvrlPairs`` or ``CvrlClips``: the batch of
    ``default_collate`` (clips stacked into ``uint8`` ``[B, C, T, H, W]``, labels into a
    tensor, tuples kept), but each clip batch in frame-major memory (``[B, T, H, W, C]``,
    permuted), the layout the clips already have. Stacking them channel-major, as
    ``default_collate`` does, is a transposing copy, several times the cost of this plain one
    (the loader benchmark measures both). In a worker process the batch is made in shared
    memory that the dataset's workers reuse from batch to batch (``cvrl.torch.shared``),
    which the main process receives without a copy; it is free for a later batch once the
    main process drops the tensor. Without a free slot it is made in fresh shared memory, as
    ``default_collate`` makes it. ``.contiguous()`` gives channel-major memory where a model
    needs it; convolutions accept this layout as it is (channels last)."""
    elem = batch[0]
    if isinstance(elem, torch.Tensor) and elem.dim() == 4:
        return _stack_frame_major(batch)
    if isinstance(elem, (tuple, list)):
        return type(elem)(collate(list(samples)) for samples in zip(*batch))
    return default_collate(batch)


def _stack_frame_major(clips: list[torch.Tensor]) -> torch.Tensor:
    c, t, h, w = clips[0].shape
    if any(x.shape != clips[0].shape for x in clips):
        raise RuntimeError(
            f"clips of different sizes in one batch: {[tuple(x.shape) for x in clips]}: "
            f"give the dataset a transform that makes them one size")
    shape = (len(clips), t, h, w, c)
    # In a worker the batch goes to the main process in shared memory: a reused slot of the
    # dataset's region where there is one, else torch's fresh shared memory, as
    # default_collate makes it.
    pooled = shared.empty(shape, clips[0])
    if pooled is not None:
        out = pooled
    elif get_worker_info() is not None:
        storage = clips[0]._typed_storage()._new_shared(len(clips) * t * h * w * c,
                                                        device=clips[0].device)
        out = clips[0].new(storage).view(shape)
    else:
        out = clips[0].new_empty(shape)
    for dst, clip in zip(out, clips):
        dst.copy_(clip.permute(1, 2, 3, 0))
    order = (0, 4, 1, 2, 3)
    return shared.finish(out, order) if pooled is not None else out.permute(order)


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
    ``transform(clip, generator)`` as in ``CvrlPairs`` (seeded from ``(seed, 0, k)``);
    ``shared_batches`` as there.
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
        shared_batches: bool = True,
    ):
        if temporal_views < 1 or spatial_crops < 1:
            raise ValueError("at least one temporal view and one spatial crop are needed")
        self._sets = _PerProcess(path)
        self._region = shared.Region() if shared_batches else None
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
        (frames,) = shards.read_clips(video, [indices], boxes=[(top, left, side, side)])
        clip = _clip_tensor(frames)
        if self.size is not None and self.size != side:
            clip = resize_clip(clip, self.size)
        if self.transform is not None:
            g = torch.Generator().manual_seed(_cvrl.sample_seed(self.seed, 0, k))
            clip = self.transform(clip, g)
        return clip, shards.label(video)
