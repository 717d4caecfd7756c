"""cvrl for PyTorch: shard sets as ``torch.utils.data.Dataset``s and pretrained encoders as
``torch.nn.Module``s.

- ``CvrlPairs``: the two clips of a CVRL positive pair per video, sampled by cvrl's own
  interval sampler, deterministic from a seed, safe in DataLoader worker processes.
- ``CvrlClips``: labelled evaluation clips, placed as ``cvrl-eval`` places its test views.
- ``collate``: a DataLoader's ``collate_fn`` that batches clips in the layout they have,
  sent from worker processes through shared memory reused from batch to batch (``shared``).
- ``RandomResizedCropFlip``: one crop box, resize and flip for every frame of a clip.
- ``load_encoder``: the R3D backbone of a ``cvrl-train`` run, weights loaded, returning
  pooled features; ``R3D`` builds any backbone ``cvrl-train`` offers.
"""

from .data import CvrlClips, CvrlPairs, collate
from .r3d import R3D, R3DConfig, load_encoder
from .transforms import RandomResizedCropFlip, resize_clip

__all__ = [
    "CvrlClips",
    "CvrlPairs",
    "R3D",
    "R3DConfig",
    "RandomResizedCropFlip",
    "collate",
    "load_encoder",
    "resize_clip",
]
