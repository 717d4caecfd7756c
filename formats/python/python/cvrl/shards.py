"""``cvrl.ShardSet``: an open shard set, its index and its frames."""

from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from . import _cvrl

PathLike = Union[str, "os.PathLike[str]"]
Video = Union[int, str]
# A crop box in pixels: (top, left, height, width).
Box = tuple[int, int, int, int]


class ShardSet:
    """A cvrl shard set (a ``cvrl-shard build`` output directory), opened for reading.

    ``path`` is one set directory or a list of them, opened as one (their class lists and
    pixel formats must agree). Every index row is checked against its shard at open;
    frames are read through memory maps, every chunk's CRC-32C checked before decoding.

    Videos are addressed by position (``0 .. len(set) - 1``, the rows of ``index``) or by
    video id. Reading releases the GIL, so threads read in parallel; a set pickles as its
    paths and opens again where it is unpickled (DataLoader workers that spawn).

    Errors: ``cvrl.ShardError`` for a damaged or inconsistent set (the message names the
    shard file, the video and the chunk), ``FileNotFoundError`` for a missing directory,
    ``IndexError`` for a video or frame out of range, ``KeyError`` for an unknown video id.
    """

    def __init__(self, path: PathLike | Sequence[PathLike]):
        if isinstance(path, (str, os.PathLike)):
            path = [path]
        self._paths = [os.fspath(p) for p in path]
        self._set = _cvrl.ShardSet(self._paths)

    def __reduce__(self):
        return (ShardSet, (self._paths,))

    def __len__(self) -> int:
        return len(self._set)

    def __repr__(self) -> str:
        return f"cvrl.ShardSet({self._paths!r}, {len(self)} videos)"

    @property
    def paths(self) -> list[str]:
        """The set directories, as given."""
        return list(self._paths)

    @property
    def classes(self) -> list[str]:
        """Class names in label-index order (empty for an unlabelled set)."""
        return self._set.classes

    @property
    def index(self):
        """The index as a ``pyarrow.Table``: the columns of ``index.parquet`` (FORMAT.md §4),
        row ``i`` for video ``i``. Built from the rows the reader validated at open and
        handed to pyarrow through the Arrow C stream interface, without copying columns."""
        import pyarrow as pa

        return pa.table(self._set.index_stream())

    def video(self, video: Video) -> int:
        """The position of ``video`` (a position or a video id)."""
        if isinstance(video, str):
            found = self._set.find(video)
            if found is None:
                raise KeyError(f"no video {video!r} in {self._paths}")
            return found
        video = int(video)
        if not 0 <= video < len(self):
            raise IndexError(f"video {video} out of range: the set has {len(self)} videos")
        return video

    def video_id(self, video: Video) -> str:
        return self._set.video(self.video(video))[0]

    def num_frames(self, video: Video) -> int:
        return self._set.video(self.video(video))[4]

    def fps(self, video: Video) -> float:
        return self._set.video(self.video(video))[5]

    def frame_size(self, video: Video) -> tuple[int, int]:
        """``(height, width)`` of the stored frames of ``video``."""
        _, w, h, *_ = self._set.video(self.video(video))
        return h, w

    def pixel_format(self, video: Video) -> str:
        """``yuv420p`` or ``rgb24``: how the frames of ``video`` are stored."""
        return self._set.video(self.video(video))[3]

    def label(self, video: Video) -> int:
        """The label index of ``video`` into ``classes``, -1 for an unlabelled video."""
        label = self._set.video(self.video(video))[6]
        return -1 if label is None else label

    def shard_path(self, video: Video) -> str:
        """The shard file that holds ``video``."""
        return os.fspath(self._set.shard_path(self.video(video)))

    def read_frames(self, video: Video, indices: Iterable[int]) -> np.ndarray:
        """Frames ``indices`` of ``video`` (in that order, repeats allowed) as RGB:
        ``uint8`` ``[T, H, W, 3]``, a fresh writable array. ``yuv420p`` frames are converted
        with BT.601 limited range, nearest chroma, exactly as cvrl's Rust readers do."""
        return self.read_clips(video, [indices])[0]

    def read_clips(
        self,
        video: Video,
        clips: Iterable[Iterable[int]],
        boxes: Optional[Sequence[Box]] = None,
        flips: Optional[Sequence[bool]] = None,
    ) -> list[np.ndarray]:
        """Several clips of one video in one call (one decoder, so chunks that clips share
        are read once): a ``uint8`` ``[T, H, W, 3]`` RGB array per clip.

        ``boxes``, one ``(top, left, height, width)`` per clip, cuts every frame of a clip
        to its box, and ``flips``, one ``bool`` per clip, mirrors it left to right: the same
        pixels as slicing and flipping the whole frames, but only the box is converted to
        RGB and copied (``[T, height, width, 3]``). ``ValueError`` for a box that is empty
        or leaves the frame, and for other than one box (or flip) per clip."""
        v = self.video(video)
        clips = [_indices(c) for c in clips]
        if boxes is None:
            h, w = self.frame_size(v)
            sizes = [(h, w)] * len(clips)
        else:
            boxes = [tuple(int(x) for x in b) for b in boxes]
            if any(len(b) != 4 or min(b) < 0 for b in boxes):
                raise ValueError(f"a box is (top, left, height, width) >= 0, got {boxes}")
            sizes = [(b[2], b[3]) for b in boxes]
        flips = None if flips is None else [bool(f) for f in flips]
        bufs = self._set.read(v, clips, True, boxes, flips)
        return [np.asarray(b).reshape(-1, h, w, 3) for b, (h, w) in zip(bufs, sizes)]

    def read_planes(
        self, video: Video, indices: Iterable[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames ``indices`` of a ``yuv420p`` video as stored: ``(Y [T, H, W], U [T, H/2,
        W/2], V [T, H/2, W/2])``, ``uint8`` views of one buffer (frame after frame, each Y
        then U then V, as FORMAT.md §3.1 lays them out). ``ValueError`` for an ``rgb24``
        video."""
        v = self.video(video)
        h, w = self.frame_size(v)
        (frames,) = self._set.read(v, [_indices(indices)], False)
        buf = np.asarray(frames)
        frame = h * w * 3 // 2
        t = len(buf) // frame
        y = np.ndarray((t, h, w), np.uint8, buf, 0, (frame, w, 1))
        u = np.ndarray((t, h // 2, w // 2), np.uint8, buf, h * w, (frame, w // 2, 1))
        v_ = np.ndarray((t, h // 2, w // 2), np.uint8, buf, h * w * 5 // 4, (frame, w // 2, 1))
        return y, u, v_


def _indices(indices: Iterable[int]) -> list[int]:
    out = [int(i) for i in indices]
    if any(i < 0 for i in out):
        raise IndexError(f"negative frame index in {out}")
    return out
