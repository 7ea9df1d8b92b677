"""The training sampler: thumbnails are exact box filters, native crops sit on JPEG's 8x8 grid."""

import numpy as np
import torch
from PIL import Image

from nfcompress.data import PhotoSampler


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_native_crops_are_copies_of_the_photo_at_multiples_of_8():
    img = _photo(90, 130, 0)
    s = PhotoSampler([img], "cpu", seed=1)
    chw = torch.from_numpy(img.transpose(2, 0, 1)).float()
    for patch in s.batch("native", 32, 20):
        hits = [
            (y, x)
            for y in range(0, 90 - 31)
            for x in range(0, 130 - 31)
            if torch.equal(chw[:, y : y + 32, x : x + 32], patch)
            or torch.equal(chw[:, y : y + 32, x : x + 32].flip(-1), patch)
        ]
        assert hits and all(y % 8 == 0 and x % 8 == 0 for y, x in hits)


def test_thumbnails_match_pillow_box_filter_for_whole_factors():
    img = _photo(64, 64, 2)  # only factor 2 fits at size 32: every thumbnail is the whole photo
    s = PhotoSampler([img], "cpu", seed=3)
    box = np.asarray(Image.fromarray(img).resize((32, 32), Image.BOX)).transpose(2, 0, 1)
    candidates = [torch.from_numpy(box.copy()).float(), torch.from_numpy(box[:, :, ::-1].copy()).float()]
    out = s.batch("thumb", 32, 8)
    assert out.shape == (8, 3, 32, 32)
    for t in out:
        assert any(torch.equal(t, c) for c in candidates)


def test_batches_are_integer_pixels_of_every_kind_and_small_photos_are_padded():
    s = PhotoSampler([_photo(40, 50, 4), _photo(300, 200, 5)], "cpu", seed=6)
    for kind, size in [("thumb", 32), ("thumb", 64), ("native", 64), ("native", 32)]:
        b = s.batch(kind, size, 16)
        assert b.shape == (16, 3, size, size) and b.dtype == torch.float32
        assert torch.equal(b, b.round()) and b.min() >= 0 and b.max() <= 255
