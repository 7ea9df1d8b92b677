"""How the flow cuts an image: tiles, chunks of tiles of one padded shape, and network runs.

The plan depends only on the image's size and the header's tile and batch, so a decoder rebuilds
it from the header alone.
"""

__all__ = ["Tile", "plan_tiles", "count_chunks", "padded", "tile_shape", "runs", "spans"]

from dataclasses import dataclass

import numpy as np


@dataclass
class Tile:
    """A tile's place in the image."""

    y: int
    x: int
    h: int
    w: int


def plan_tiles(height: int, width: int, tile: int, batch: int, multiple: int) -> list[list[Tile]]:
    """Split an image into tiles and group them into chunks of equal padded shape.

    The plan depends only on its arguments, so the decoder rebuilds it from the header and
    every chunk is decoded with exactly the batch shape it was encoded with.
    """
    groups: dict[tuple[int, int], list[Tile]] = {}
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            t = Tile(y, x, min(tile, height - y), min(tile, width - x))
            key = (-(-t.h // multiple) * multiple, -(-t.w // multiple) * multiple)
            groups.setdefault(key, []).append(t)
    chunks = []
    for key in sorted(groups, reverse=True):
        tiles = groups[key]
        chunks.extend(tiles[i : i + batch] for i in range(0, len(tiles), batch))
    return chunks


def count_chunks(height: int, width: int, tile: int, batch: int, multiple: int) -> int:
    """How many chunks `plan_tiles` makes, computed without building the plan."""

    def sizes(n: int) -> dict[int, int]:
        full, rem = divmod(n, tile)
        out = {tile: full} if full else {}
        if rem:
            padded = -(-rem // multiple) * multiple
            out[padded] = out.get(padded, 0) + 1
        return out

    rows, cols = sizes(height), sizes(width)
    return sum(-(-(r * c) // batch) for r in rows.values() for c in cols.values())


def padded(rgb: np.ndarray, tiles: list[Tile], multiple: int) -> np.ndarray:
    """The tiles of an (H, W, 3) image as a (B, 3, h, w) batch, edges replicated to a multiple."""
    ph, pw = tile_shape(tiles, multiple)
    out = np.empty((len(tiles), 3, ph, pw), np.uint8)
    for i, t in enumerate(tiles):
        crop = rgb[t.y : t.y + t.h, t.x : t.x + t.w]
        out[i] = np.pad(crop, ((0, ph - t.h), (0, pw - t.w), (0, 0)), mode="edge").transpose(2, 0, 1)
    return out


def tile_shape(tiles: list[Tile], multiple: int) -> tuple[int, int]:
    """The padded (h, w) of a chunk's tiles."""
    return -(-tiles[0].h // multiple) * multiple, -(-tiles[0].w // multiple) * multiple


def runs(jobs: list[tuple[int, object]], batch: int) -> list[list[int]]:
    """Chunks (tile count, key) grouped into network runs: of one key and at most `batch` tiles.

    A key of None runs alone: float networks give other bits for other batch shapes, so only
    portable chunks, whose network is exact, may share a run.
    """
    runs: list[list[int]] = []
    open_runs: dict[object, tuple[list[int], int]] = {}
    for i, (n, key) in enumerate(jobs):
        run, size = open_runs.get(key, ([], batch))
        if key is None or size + n > batch:
            run, size = [], 0
            runs.append(run)
        run.append(i)
        open_runs[key] = (run, size + n)
    return runs


def spans(starts: list[int], per_tile: int) -> list[tuple[int, int]]:
    """The flat latent rows of each chunk in a run, from the chunks' first tiles (and the end)."""
    return [(a * per_tile, b * per_tile) for a, b in zip(starts, starts[1:])]
