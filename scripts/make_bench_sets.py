"""Write the benchmark folders from a photo folder: 32x32 and 64x64 thumbnails, full-size PNGs.

python scripts/make_bench_sets.py ../shared/data/photos/val cache/bench [--full-max-pixels N]
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from nfcompress.data import eval_sets, list_images, load_photo


def main(src: str, dst: str, full_max_pixels: int = 1_100_000, per_photo: int = 8) -> None:
    """Thumbnails exactly as training validates (seeded), and full-size photos up to a size."""
    paths = list_images([src])
    out = Path(dst)
    for kind, arrays in eval_sets(paths, per_photo=per_photo).items():
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(arrays):
            Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0))).save(folder / f"{i:04d}.png")
    folder = out / "full"
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        img = load_photo(p)
        if img.shape[0] * img.shape[1] <= full_max_pixels:
            Image.fromarray(img).save(folder / f"{p.stem}.png")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
