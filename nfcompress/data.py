"""Training and validation images: thumbnails and native-resolution crops from photo folders."""

__all__ = [
    "IMAGE_SUFFIXES",
    "list_images",
    "package_of",
    "load_photo",
    "thumbnail",
    "native_crop",
    "PatchPool",
    "eval_sets",
]

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def list_images(dirs: Iterable[str | Path]) -> list[Path]:
    """Every image file under the given folders (or the files themselves), sorted."""
    out: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_file():
            out.append(p)
        else:
            out.extend(f for f in sorted(p.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES)
    return out


def package_of(path: Path) -> str:
    """The source package of a photo named `<package>--<stem>.jpg` (the whole stem otherwise)."""
    return path.stem.split("--")[0]


def load_photo(path: Path, max_side: int = 0) -> np.ndarray:
    """An RGB uint8 array (H, W, 3); JPEGs are downscaled while decoding when `max_side` asks."""
    with Image.open(path) as im:
        if max_side and max(im.size) > max_side:
            im.draft("RGB", (max_side, max_side))
        return np.asarray(im.convert("RGB"))


def thumbnail(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of the photo, box-downsampled to size x size (as ImageNet32/64)."""
    h, w = img.shape[:2]
    short = min(h, w)
    lo = min(2 * size, short)
    side = int(np.exp(rng.uniform(np.log(lo), np.log(short))))
    y = rng.integers(0, h - side + 1)
    x = rng.integers(0, w - side + 1)
    crop = Image.fromarray(img[y : y + side, x : x + side])
    return np.asarray(crop.resize((size, size), Image.BOX))


def native_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size x size crop at the photo's own resolution (edges mirrored if it is smaller)."""
    h, w = img.shape[:2]
    if h < size or w < size:
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="symmetric")
        h, w = img.shape[:2]
    y = rng.integers(0, h - size + 1)
    x = rng.integers(0, w - size + 1)
    return img[y : y + size, x : x + size]


@dataclass
class PatchPool:
    """A pool of uint8 patches (N, 3, S, S) of one kind, drawn from in random batches."""

    kind: str
    patches: np.ndarray

    @classmethod
    def build(cls, photos: list[np.ndarray], kind: str, size: int, count: int, seed: int) -> "PatchPool":
        """Make `count` patches of `kind` ('thumb' or 'native') from the photos, evenly."""
        rng = np.random.default_rng(seed)
        make = thumbnail if kind == "thumb" else native_crop
        out = np.empty((count, size, size, 3), np.uint8)
        for i in range(count):
            out[i] = make(photos[i % len(photos)], size, rng)
        return cls(f"{kind}{size}", np.ascontiguousarray(out.transpose(0, 3, 1, 2)))

    def batch(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random patches, each flipped left-right with probability 1/2."""
        idx = rng.integers(0, len(self.patches), n)
        b = self.patches[idx]
        flip = rng.random(n) < 0.5
        b[flip] = b[flip, :, :, ::-1]
        return b


def eval_sets(paths: list[Path], per_photo: int = 8, seed: int = 1234) -> dict[str, np.ndarray]:
    """Fixed validation sets: 32x32 and 64x64 thumbnails and 64x64 native crops of each photo."""
    rng = np.random.default_rng(seed)
    sets: dict[str, list[np.ndarray]] = {"thumb32": [], "thumb64": [], "native64": []}
    for p in paths:
        img = load_photo(p)
        for _ in range(per_photo):
            sets["thumb32"].append(thumbnail(img, 32, rng))
            sets["thumb64"].append(thumbnail(img, 64, rng))
            sets["native64"].append(native_crop(img, 64, rng))
    return {k: np.stack(v).transpose(0, 3, 1, 2).copy() for k, v in sets.items()}
