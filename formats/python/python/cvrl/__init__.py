"""cvrl shard sets in Python: frames as numpy arrays, the index as a pyarrow table.

    import cvrl
    shards = cvrl.ShardSet("data/demo/shards")
    clip = shards.read_frames("juggling/long_640x360", range(0, 32, 2))  # uint8 [16, H, W, 3]

The reading is cvrl's own Rust reader (chunk checksums, the shard codec), with the GIL
released while it decodes. ``cvrl.torch`` holds the PyTorch side: ``CvrlPairs`` and
``CvrlClips`` datasets and ``load_encoder`` for encoders trained by ``cvrl-train``.
"""

from ._cvrl import ShardError
from .shards import ShardSet

__all__ = ["ShardError", "ShardSet"]
