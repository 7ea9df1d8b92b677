"""What an image shows of screen content, cheaply: how its pixels repeat their neighbours and how
many colours it has (auto reads them before it runs any model)."""

__all__ = ["colours", "colour_count", "repeat_share"]

import numpy as np


def colours(planes: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 planes as one colour per pixel (int64)."""
    c = planes.astype(np.int64)
    return c[..., 0] if c.shape[2] == 1 else (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def colour_count(planes: np.ndarray) -> int:
    """How many distinct colours an image has."""
    return int(np.unique(colours(planes)).size)


def repeat_share(planes: np.ndarray) -> float:
    """The share of pixels whose colour equals their W, N, NW or NE neighbour's: screen content
    shows 0.8 and more, photos little (a cheap test, one pass of vector operations)."""
    c = colours(planes)
    if c.size < 2:
        return 0.0
    same = np.zeros(c.shape, bool)
    same[:, 1:] |= c[:, 1:] == c[:, :-1]
    same[1:, :] |= c[1:, :] == c[:-1, :]
    same[1:, 1:] |= c[1:, 1:] == c[:-1, :-1]
    same[1:, :-1] |= c[1:, :-1] == c[:-1, 1:]
    return float(same.mean())
