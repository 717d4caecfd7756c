"""The R3D backbone of cvrl in PyTorch, and ``load_encoder`` for ``cvrl-train`` runs.

The layers, their order and their variable names are those of ``trainer/src/model/r3d.rs``
(module doc there: the 3D ResNet "Slow" pathway with a temporal-stride-2 stem, res2..res5,
global average pooling), so the ``encoder.safetensors`` a run exports loads by name:
``stem.conv``, ``stem.bn``, ``res{2..5}.{block}.conv_{a,b,c,shortcut}`` and the matching
``bn_*``. Every conv is bias-free, padded by half its kernel, and followed by BatchNorm
(eps 1e-5, momentum 0.1 in PyTorch's convention).

Input: clips ``[N, 3, T, H, W]``, float with pixels in ``[0, 1]`` and no mean/std
normalisation (as the trainer feeds them), or ``uint8``, which ``forward`` divides by 255.
Output: pooled features ``[N, feature_dim]`` (512 x width for depths 18 and 34, 2048 x
width for 50, 101 and 152), not normalised: what ``cvrl-eval`` extracts.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: Blocks in res2..res5 per depth, and whether the blocks are bottlenecks.
DEPTHS = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}
#: Inner widths of res2..res5 relative to the stem's width (64 at the reference width).
STAGE_WIDTHS = (64, 128, 256, 512)
#: Temporal kernel of the temporal conv of each block of res2..res5.
STAGE_TEMPORAL_KERNELS = (1, 1, 3, 3)
#: Spatial stride of the first block of res2..res5.
STAGE_SPATIAL_STRIDES = (1, 2, 2, 2)
#: Stems: spatial kernel and stride of the stem conv.
STEMS = {"reference": (7, 2), "small": (3, 1)}
EXPANSION = 4
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class R3DConfig:
    """An R3D backbone: what ``cvrl-train``'s ``--model``, ``--base-width``,
    ``--width-multiplier`` and ``--stem`` set (the stem's 5-frame kernel and temporal stride
    2 are fixed there)."""

    depth: int = 50
    base_width: int = 64
    width_multiplier: int = 1
    stem: str = "reference"
    stem_temporal_kernel: int = 5
    stem_temporal_stride: int = 2

    def __post_init__(self):
        if self.depth not in DEPTHS:
            raise ValueError(f"unknown R3D depth {self.depth} (expected {sorted(DEPTHS)})")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r} (expected {sorted(STEMS)})")
        if self.base_width < 1 or self.width_multiplier < 1 or self.stem_temporal_stride < 1:
            raise ValueError(f"widths and strides must be at least 1: {self}")
        if self.stem_temporal_kernel % 2 != 1:
            raise ValueError(f"the stem's temporal kernel must be odd: {self}")

    @property
    def stem_width(self) -> int:
        return self.base_width * self.width_multiplier

    def stage_width(self, i: int) -> int:
        return self.stem_width * STAGE_WIDTHS[i] // STAGE_WIDTHS[0]

    @property
    def feature_dim(self) -> int:
        return self.stage_width(3) * (EXPANSION if DEPTHS[self.depth][1] else 1)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike) -> "R3DConfig":
        """The backbone of a ``cvrl-train`` run, from its ``run.json``."""
        path = os.path.join(run_dir, "run.json")
        with open(path) as f:
            config = json.load(f).get("config", {})
        model = str(config.get("model", ""))
        if not model.startswith("r3d") or not model[3:].isdigit():
            raise ValueError(f"{path}: model {model!r} is not an R3D (r3d18 .. r3d152)")
        return cls(
            depth=int(model[3:]),
            base_width=int(config.get("base_width", 64)),
            width_multiplier=int(config.get("width_multiplier", 1)),
            stem=str(config.get("stem", "reference")),
        )


class ConvBn(nn.Sequential):
    """A bias-free conv padded by half its kernel, then BatchNorm: ``conv``, ``bn``."""

    def __init__(self, c_in: int, c_out: int, kernel, stride):
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride, padding=tuple(k // 2 for k in kernel),
                              bias=False)
        self.bn = nn.BatchNorm3d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)


class Block(nn.Module):
    """A residual block, basic (``a``, ``b``) or bottleneck (``a``, ``b``, ``c``), with a
    1x1x1 projection shortcut where the shape changes. Layers ``conv_<x>``, ``bn_<x>``."""

    def __init__(self, bottleneck: bool, c_in: int, width: int, temporal_kernel: int,
                 spatial_stride: int):
        super().__init__()
        stride = (1, spatial_stride, spatial_stride)
        self.bottleneck = bottleneck
        if bottleneck:
            c_out = width * EXPANSION
            self._add("a", c_in, width, (temporal_kernel, 1, 1), (1, 1, 1))
            self._add("b", width, width, (1, 3, 3), stride)
            self._add("c", width, c_out, (1, 1, 1), (1, 1, 1))
        else:
            c_out = width
            self._add("a", c_in, width, (temporal_kernel, 3, 3), stride)
            self._add("b", width, width, (1, 3, 3), (1, 1, 1))
        self.has_shortcut = c_in != c_out or spatial_stride != 1
        if self.has_shortcut:
            self._add("shortcut", c_in, c_out, (1, 1, 1), stride)
        self.out_channels = c_out

    def _add(self, name: str, c_in: int, c_out: int, kernel, stride) -> None:
        pair = ConvBn(c_in, c_out, kernel, stride)
        self.add_module(f"conv_{name}", pair.conv)
        self.add_module(f"bn_{name}", pair.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn_b(self.conv_b(torch.relu(self.bn_a(self.conv_a(x)))))
        if self.bottleneck:
            y = self.bn_c(self.conv_c(torch.relu(y)))
        shortcut = self.bn_shortcut(self.conv_shortcut(x)) if self.has_shortcut else x
        return torch.relu(y + shortcut)


class R3D(nn.Module):
    """The R3D backbone: stem (conv, BN, ReLU, max-pool 1x3x3 stride 1x2x2), res2..res5 and
    global average pooling over T, H, W. ``forward`` maps clips to pooled features."""

    def __init__(self, config: R3DConfig = R3DConfig()):
        super().__init__()
        self.config = config
        k, s = STEMS[config.stem]
        self.stem = ConvBn(3, config.stem_width, (config.stem_temporal_kernel, k, k),
                           (config.stem_temporal_stride, s, s))
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        blocks, bottleneck = DEPTHS[config.depth]
        c_in = config.stem_width
        for i, n in enumerate(blocks):
            stage = []
            for j in range(n):
                block = Block(bottleneck, c_in, config.stage_width(i), STAGE_TEMPORAL_KERNELS[i],
                              STAGE_SPATIAL_STRIDES[i] if j == 0 else 1)
                c_in = block.out_channels
                stage.append(block)
            self.add_module(f"res{i + 2}", nn.Sequential(*stage))
        self.feature_dim = config.feature_dim

    def forward_stages(self, x: torch.Tensor) -> torch.Tensor:
        """The output of res5, ``[N, feature_dim, T', H', W']``, before pooling."""
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        x = self.pool(torch.relu(self.stem(x)))
        return self.res5(self.res4(self.res3(self.res2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x).mean(dim=(2, 3, 4))


def load_encoder(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> R3D:
    """The encoder of the ``cvrl-train`` run in ``run_dir``: the backbone ``run.json``
    describes, with the weights and BatchNorm statistics of its ``encoder.safetensors``, in
    eval mode, on ``map_location``. For fine-tuning, call ``.train()`` and put a head of
    ``.feature_dim`` inputs on top."""
    model = R3D(R3DConfig.from_run(run_dir))
    path = os.path.join(run_dir, "encoder.safetensors")
    state = read_safetensors(path)
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{path} does not match the run's {model.config}: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    own = model.state_dict()
    for name, value in state.items():
        if tuple(value.shape) != tuple(own[name].shape):
            raise ValueError(f"{path}: {name} has shape {tuple(value.shape)}, the model "
                             f"{tuple(own[name].shape)}")
    model.load_state_dict(state, strict=False)
    return model.to(map_location).eval()


_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "U8": np.uint8}


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (8-byte little-endian header length, a JSON
    header of dtype, shape and byte range per tensor, then the bytes), checked against the
    file's size."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(data[8 : 8 + n])
    body = len(data) - 8 - n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: {name}: dtype {info['dtype']} not supported")
        start, end = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if not 0 <= start <= end <= body or end - start != count * np.dtype(dtype).itemsize:
            raise ValueError(f"{path}: {name}: byte range {start}..{end} does not fit")
        array = np.frombuffer(data, dtype, count, 8 + n + start).reshape(info["shape"])
        out[name] = torch.from_numpy(array.copy())
    return out
