"""Writes the photographs that `cvrl-shard synth --textures DIR` cuts backgrounds from:
colour photographs bundled with scikit-image (`skimage.data`, no download), one PNG each.

    .venv/bin/python scripts/export-textures.py [DIR]      # default data/textures

The set is fixed here, so DIR holds the same files (and synth the same videos) on every
machine with the same scikit-image; synth reads them in file-name order.
"""
import sys
from pathlib import Path

import numpy as np
import skimage
import skimage.data
import skimage.io

# Name -> loader: scenes with the colour statistics of footage (people, animals, objects,
# outdoor scenes), not microscopy or synthetic images.
PHOTOS = {
    "astronaut": skimage.data.astronaut,
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
    "rocket": skimage.data.rocket,
}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, load in PHOTOS.items():
        image = np.ascontiguousarray(load()[..., :3])
        if image.dtype != np.uint8 or image.ndim != 3:
            sys.exit(f"skimage.data {name}: expected 8-bit RGB, got {image.dtype} {image.shape}")
        path = out / f"{name}.png"
        skimage.io.imsave(path, image, check_contrast=False)
        print(f"{path}: {image.shape[1]}x{image.shape[0]}")
    print(f"{len(PHOTOS)} photographs from scikit-image {skimage.__version__} -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data/textures"))
