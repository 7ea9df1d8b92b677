"""Training and validation images: thumbnails and native-resolution crops from photo folders."""

__all__ = [
    "IMAGE_SUFFIXES",
    "list_images",
    "package_of",
    "split_heldout",
    "load_photo",
    "thumbnail",
    "native_crop",
    "PhotoSampler",
    "eval_sets",
]

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
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


def split_heldout(paths: list[Path], holdout: Iterable[str]) -> tuple[list[Path], list[Path]]:
    """(kept, held out): the photos outside and inside the held-out source packages."""
    held = set(holdout)
    return [p for p in paths if package_of(p) not in held], [p for p in paths if package_of(p) in held]


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


class PhotoSampler:
    """Fresh random patches drawn from photos held as tensors (on the training device).

    Thumbnails are box-downsampled by a whole factor, pixel for pixel as Pillow's BOX resize;
    native crops start on multiples of 8, where JPEG's block grid lies in a photo coded from its
    corner, so the model sees the grid as full-size photos present it.
    """

    def __init__(self, photos: list[np.ndarray], device: torch.device | str, seed: int, min_side: int = 64) -> None:
        self.photos = []
        for img in photos:
            h, w = img.shape[:2]
            if h < min_side or w < min_side:
                img = np.pad(img, ((0, max(0, min_side - h)), (0, max(0, min_side - w)), (0, 0)), mode="symmetric")
            self.photos.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).to(device))
        self.rng = np.random.default_rng(seed)

    def batch(self, kind: str, size: int, n: int) -> torch.Tensor:
        """n patches (n, 3, size, size) as integer-valued floats, each flipped left-right with p=1/2."""
        pick = self.rng.integers(0, len(self.photos), n)
        if kind == "thumb":
            out = self._thumbs(pick, size)
        else:
            crops = []
            for i in pick:
                img = self.photos[i]
                y = 8 * self.rng.integers(0, (img.shape[1] - size) // 8 + 1)
                x = 8 * self.rng.integers(0, (img.shape[2] - size) // 8 + 1)
                crops.append(img[:, y : y + size, x : x + size])
            out = torch.stack(crops).float()
        flip = torch.from_numpy(self.rng.random(n) < 0.5).to(out.device)
        return torch.where(flip[:, None, None, None], out.flip(-1), out)

    def _thumbs(self, pick: np.ndarray, size: int) -> torch.Tensor:
        factors = np.ones(len(pick), np.int64)
        for j, i in enumerate(pick):
            top = min(self.photos[i].shape[1:]) // size
            if top >= 2:
                factors[j] = min(top, int(np.exp(self.rng.uniform(np.log(2), np.log(top + 1)))))
        out = torch.empty(len(pick), 3, size, size, device=self.photos[0].device)
        for k in np.unique(factors):
            rows = np.nonzero(factors == k)[0]
            side = int(k) * size
            crops = []
            for r in rows:
                img = self.photos[pick[r]]
                y = self.rng.integers(0, img.shape[1] - side + 1)
                x = self.rng.integers(0, img.shape[2] - side + 1)
                crops.append(img[:, y : y + side, x : x + side])
            # Rows, then columns, each rounded, as Pillow's two-pass BOX resize does.
            wide = torch.floor(torch.nn.functional.avg_pool2d(torch.stack(crops).float(), (1, int(k))) + 0.5)
            pooled = torch.floor(torch.nn.functional.avg_pool2d(wide, (int(k), 1)) + 0.5)
            out[torch.from_numpy(rows).to(out.device)] = pooled
        return out


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
