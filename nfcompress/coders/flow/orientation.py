"""The eight flips and transposes of a tile, and which of them an encoder tries at each effort.

The flow is not symmetric: a tile often costs fewer bits turned another way. The encoder codes
each tile in the orientation that costs least and stores its number (3 bits) in the stream.
"""

from __future__ import annotations

__all__ = ["ORIENTATIONS", "EFFORTS", "DEFAULT_EFFORT", "orient", "unorient", "candidates"]

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads the efforts without loading torch
    from torch import Tensor

# Orientation k: transpose first when bit 2 is set, then flip columns (bit 0) and rows (bit 1).
ORIENTATIONS = 8
EFFORTS = (1, 2, 3)
# Effort 1 keeps a 512x512 photo at about 0.2 Msub/s each way on a 2-core CPU; 2 and 3 try more
# orientations (twice and eight times the network work on encode, none more on decode).
DEFAULT_EFFORT = 1


def orient(x: Tensor, k: int) -> Tensor:
    """Tiles (..., H, W) turned to orientation k (0 leaves them as they are)."""
    if k & 4:
        x = x.transpose(-2, -1)
    if k & 1:
        x = x.flip(-1)
    if k & 2:
        x = x.flip(-2)
    return x


def unorient(x: Tensor, k: int) -> Tensor:
    """The inverse of `orient(., k)`."""
    if k & 2:
        x = x.flip(-2)
    if k & 1:
        x = x.flip(-1)
    if k & 4:
        x = x.transpose(-2, -1)
    return x


def candidates(effort: int, square: bool) -> list[int]:
    """Orientations an encoder tries at an effort (1 fastest), transposes only for square tiles.

    Every tile of a chunk then keeps the chunk's shape.

    >>> candidates(1, True), candidates(2, True), candidates(2, False), len(candidates(3, True))
    ([0], [0, 4], [0, 1], 8)
    """
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {EFFORTS}, got {effort}")
    if effort == 1:
        return [0]
    if effort == 2:
        return [0, 4] if square else [0, 1]
    return list(range(8)) if square else [0, 1, 2, 3]
