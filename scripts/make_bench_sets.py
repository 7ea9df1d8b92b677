"""Write the benchmark folders from a photo folder: 32x32 and 64x64 thumbnails, native 64x64 crops,
central 512x512 crops of the first 4 photos, full-size PNGs.

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
    for name in ("full", "crop512"):
        (out / name).mkdir(parents=True, exist_ok=True)
    crops = 0
    for p in paths:
        img = load_photo(p)
        h, w = img.shape[:2]
        if h * w <= full_max_pixels:
            Image.fromarray(img).save(out / "full" / f"{p.stem}.png")
        if crops < 4 and min(h, w) >= 512:
            y, x = (h - 512) // 2, (w - 512) // 2
            Image.fromarray(img[y : y + 512, x : x + 512]).save(out / "crop512" / f"{p.stem}.png")
            crops += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
