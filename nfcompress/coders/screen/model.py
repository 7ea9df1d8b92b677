"""The screen model: screenshots and computer-made graphics, where most pixels repeat a neighbour.

A pixel is one whole colour (its grey value, or R << 16 | G << 8 | B). The image is cut into
tiles of TILE x TILE whose pixels decode in wavefronts t = 2i + j (`wavefronts`), wavefront t of
every tile at once (a tile reads nothing of the others' pixels, but every count, table and the
palette are shared), and each pixel codes as

1. the slot of the first of its candidates that holds its colour: its causal neighbours
   (`CANDIDATES`) and the colours that followed the same neighbourhoods before (the scheme's
   hash sets), or the escape;
2. after an escape, whether its colour is NEW (from version 12), then its colour's rank in the
   palette (the colours first seen in earlier wavefronts, at most PALETTE of them) by distance
   from its median prediction, the candidates' colours last (version 11: NEW as the last rank);
3. a NEW colour's channels: green against its median predictor, red and blue against green plus
   the median of their differences from green, each modulo 256.

Every symbol is coded under adaptive counts that the decoder rebuilds: they start at 1 and grow
by STEP with every symbol of an earlier wavefront. The slots' counts are kept per context: how
the hash guesses relate to W and N, which of W, N, NE and NW are equal, and what W and N coded.
The coder sees integer weights computed from the counts by integer arithmetic alone, so files
decode alike on every machine. The stream is cut into segments of about SEGMENT pixels (whole
wavefronts), each an ANS stream of its own, so that the encoder holds one segment's symbols at
once. This module lays the image out and keeps the state; `kernels` codes it, a segment at a
time. What differs between payload versions is a `Scheme` (`SCHEMES`).
"""

__all__ = [
    "CANDIDATES",
    "PALETTE",
    "SCHEME",
    "SCHEMES",
    "Scheme",
    "encode",
    "decode",
    "occurrences",
]

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from nfcompress.coders.screen import kernels, prior
from nfcompress.coders.screen.content import colours
from nfcompress.coders.screen.kernels import ABSENT, BUCKETS, FAR, GENERATIONS, HASH_BITS, PALETTE, RAW_CONTEXTS
from nfcompress.coding import rans
from nfcompress.coding.primitives import PRECISION, wavefronts
from nfcompress.errors import FormatError

# Causal neighbours (rows up, columns left): all on earlier wavefronts of t = 2i + j.
CANDIDATES = ((0, 1), (1, 0), (1, -1), (1, 1), (0, 2), (2, 0), (2, -1), (1, 2), (2, 1), (2, -2), (0, 3), (3, 0))
_PRIOR_12 = "77f5c327a2e67d8ad17e94ea2df3ac6542760df93b34109eb32a713e1d604700"  # prior.safetensors
T = TypeVar("T")
_MIX = np.array([(0x9E3779B97F4A7C15 * (2 * k + 1)) % (1 << 64) | 1 for k in range(len(CANDIDATES))], np.uint64)


@dataclass(frozen=True)
class Scheme:
    """What a payload version codes with. Besides CANDIDATES, each pixel's candidates hold the
    colours that followed the same neighbourhoods last time: a table per hash set, keyed by a hash
    of those of CANDIDATES (each set a prefix of the next longer one), whose guesses come after
    the first four candidates."""

    hash_sets: tuple[tuple[int, ...], ...]
    new_flag: bool  # NEW is a symbol of its own before a palette rank, under its neighbours' NEW-ness
    blend: int  # the coarse counts' weight as a prior of the slots' (0: 4 x the counts plus the coarse)
    grouped: bool  # from GROUPED NEW colours in a wavefront, their residuals go context by context (`kernels`)
    prior: str = ""  # the sha256 of the learned prior the counts start from (`prior`), or none
    period: bool = False  # the last candidate: the pixel a period of rows up (`_period`)

    @property
    def slots(self) -> int:
        """The slot symbols: every candidate, then the escape (a colour no candidate holds)."""
        return len(CANDIDATES) + len(self.hash_sets) + self.period + 1


# Version 11 files; version 12 adds two short tables (what followed W and N, and W alone), a NEW
# flag, the blend of coarse and fine slot counts (1.8% smaller on tuning screenshots), counts that
# start from a prior learned from screenshots (2.4% smaller again) and a period of rows.
SCHEMES = {
    11: Scheme(((0, 1, 2, 3, 4, 5), (0, 1, 2, 3), tuple(range(12))), False, 0, False),
    12: Scheme(((0, 1, 2, 3, 4, 5), (0, 1, 2, 3), tuple(range(12)), (0, 1), (0,)), True, 32, True, _PRIOR_12, True),
}
SCHEME = SCHEMES[12]  # what `encode` writes
TOP, LEFT, RIGHT = 3, 3, 2  # canvas padding: rows above (a period's rows, if more), columns left and right
PERIOD = 64  # the longest period of rows a payload may name
STEP = 24  # what a symbol adds to its count (each count starts at 1)
TILE = 256  # tiles decode side by side, a wavefront of each at once
SEGMENT = 1 << 17  # pixels of a segment, about (whole wavefronts)
# Slot contexts: table 0's guess as W, as N, absent (DISTINCT), the equalities of W, N, NE and NW
# (6 bits), the slot buckets (`_buckets`) of W's and N's symbols, and table 2's guess (FAR).
DISTINCT, EQUAL = 6, 64
CONTEXTS = DISTINCT * EQUAL * BUCKETS * BUCKETS * FAR
NEW_CONTEXTS = 16  # which of W, N, NE and NW were NEW colours


def _buckets(scheme: Scheme) -> np.ndarray:
    """The bucket of each symbol `sym` holds: slot 0, slot 1, slots 2.., ESCAPE, outside, NEW."""
    return np.array([0, 1] + [2] * (scheme.slots - 3) + [3, 4, 3])


def _min_bits(scheme: Scheme) -> float:
    """Bits every pixel costs at least (its slot's largest weight is 2^24 - slots + 1 of 2^24): a
    payload bounds the size it can decode to, if loosely (a flat image costs about that)."""
    return -float(np.log2(((1 << PRECISION) - scheme.slots + 1) / (1 << PRECISION)))


def _planes(colours: np.ndarray, channels: int) -> np.ndarray:
    """The inverse of `content.colours`."""
    if channels == 1:
        return colours[..., None].astype(np.uint8)
    return np.stack([(colours >> s) & 255 for s in (16, 8, 0)], axis=-1).astype(np.uint8)


class _Layout:
    """The image cut into tiles of TILE x TILE, each on a canvas of its own with ABSENT around it,
    and the wavefronts that decode: wavefront t of every tile at once, tile after tile."""

    def __init__(self, h: int, w: int, period: int = 0) -> None:
        self.h, self.w, self.top = h, w, max(TOP, period)
        self.cw, self.size = LEFT + TILE + RIGHT, (self.top + TILE) * (LEFT + TILE + RIGHT)
        self.offsets = np.array([-u * self.cw - v for u, v in CANDIDATES], np.int64)
        self.period = -period * self.cw  # the offset of the pixel `period` rows up
        self.tiles = [(y, x, min(TILE, h - y), min(TILE, w - x)) for y in range(0, h, TILE) for x in range(0, w, TILE)]
        shapes: dict[tuple[int, int], list[int]] = {}
        for k, (_, _, th, tw) in enumerate(self.tiles):
            shapes.setdefault((th, tw), []).append(k)
        fronts: list[list[np.ndarray]] = []
        for (th, tw), ks in shapes.items():
            bases = np.array(ks, np.int64) * self.size
            for t, (i, j) in enumerate(wavefronts(th, tw)):
                if t == len(fronts):
                    fronts.append([])
                fronts[t].append(np.add.outer(bases, (self.top + i) * self.cw + LEFT + j).ravel())
        # Every cell in decoding order (each wavefront's sorted), and where each wavefront starts.
        self.starts = np.cumsum([0] + [sum(len(part) for part in f) for f in fronts])
        self.order = np.empty(self.starts[-1], np.int64)
        for t, f in enumerate(fronts):
            self.order[self.starts[t] : self.starts[t + 1]] = np.sort(np.concatenate(f))

    def run(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """The cells of wavefronts a to b - 1 in decoding order, and where each wavefront starts."""
        return self.order[self.starts[a] : self.starts[b]], self.starts[a : b + 1] - self.starts[a]

    def canvas(self, fill: int, dtype: type = np.int32) -> np.ndarray:
        """A flat canvas of every tile, every cell `fill`."""
        return np.full(len(self.tiles) * self.size, fill, dtype)

    def cells(self, k: int) -> np.ndarray:
        """The slice of a canvas that holds tile k (top + TILE rows of cw cells)."""
        return np.s_[k * self.size : (k + 1) * self.size]

    def _inside(self, canvas: np.ndarray, k: int) -> np.ndarray:
        """The cells of tile k's pixels in a canvas, as a writable (th, tw) view."""
        _, _, th, tw = self.tiles[k]
        return canvas[self.cells(k)].reshape(self.top + TILE, self.cw)[self.top : self.top + th, LEFT : LEFT + tw]

    def place(self, canvas: np.ndarray, image: np.ndarray) -> None:
        """Write an (H, W) image into a canvas's tiles."""
        for k, (y, x, th, tw) in enumerate(self.tiles):
            self._inside(canvas, k)[...] = image[y : y + th, x : x + tw]

    def image(self, canvas: np.ndarray) -> np.ndarray:
        """The (H, W) image a canvas's tiles hold."""
        out = np.empty((self.h, self.w), canvas.dtype)
        for k, (y, x, th, tw) in enumerate(self.tiles):
            out[y : y + th, x : x + tw] = self._inside(canvas, k)
        return out

    def segments(self) -> list[tuple[int, int]]:
        """Runs of whole wavefronts [a, b) of about SEGMENT pixels each."""
        out, start = [], 0
        for t in range(1, len(self.starts)):
            if self.starts[t] - self.starts[start] >= SEGMENT:
                out.append((start, t))
                start = t
        if start < len(self.starts) - 1:
            out.append((start, len(self.starts) - 1))
        return out


def _equality_tables() -> tuple[np.ndarray, np.ndarray]:
    """What the slot context (`kernels._front`) reads of the bits of which candidates are equal
    (`_PAIRS`, then G0 absent, G2 absent): the context's first part, distinct * EQUAL + equal, and
    its last, far: equal the equalities of W, N, NE and NW (6 bits), distinct G0 as W (1), as N
    (2), absent (3), far G2 absent (3), as W (0), as N (1), as G0 (4), else 2."""
    flags = _PAIRS.shape[1] + 2
    bits = np.arange(1 << flags)
    on = [(bits >> k) & 1 for k in range(flags)]
    equal = sum(on[k] << k for k in range(6))
    distinct = np.minimum(on[6] + 2 * on[7] + 3 * on[11], DISTINCT - 1)
    far = np.where(on[12] == 1, 3, np.where(on[8] == 1, 0, np.where(on[9] == 1, 1, np.where(on[10] == 1, 4, 2))))
    return distinct * EQUAL + equal, far


# The candidate pairs whose equality the slot context reads: W = N, W = NE, W = NW, N = NE, N = NW,
# NE = NW, G0 = W, G0 = N, G2 = W, G2 = N, G2 = G0 (candidates 0-3 W, N, NE, NW; 4 G0; 6 G2).
_PAIRS = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (4, 0), (4, 1), (6, 0), (6, 1), (6, 4)]).T.copy()
_EQUALITIES, _FAR_CODE = _equality_tables()
_NOTHING = np.zeros(0, np.int32)  # the colours `kernels.segment` is given to decode


def _hash_plan(hash_sets: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """The tables from the shortest hash set to the longest, and their lengths: each set is a
    prefix of CANDIDATES, its hash continuing the shorter set's (`kernels._front`)."""
    order = sorted(range(len(hash_sets)), key=lambda k: len(hash_sets[k]))
    assert all(hash_sets[k] == tuple(range(len(hash_sets[k]))) for k in order)
    return np.array(order, np.int64), np.array([len(hash_sets[k]) for k in order], np.int64)


class _Spares:
    """The large arrays of states that are done, for the next state of this process: memory the
    system hands out zeroed costs a page fault a page at first touch, which took most of the
    time of a small image (25 of 36 ms a 32x32 thumbnail). One of each kind is kept."""

    def __init__(self) -> None:
        self._lock, self._kept = threading.Lock(), {}

    def take(self, key: tuple, make: Callable[[], T]) -> T:
        """A kept item of `key`, or a new one from `make`."""
        with self._lock:
            got = self._kept.pop(key, None)
        return make() if got is None else got

    def give(self, key: tuple, item: object) -> None:
        """Keep an item of `key` for the next `take`."""
        with self._lock:
            self._kept.setdefault(key, item)


_SPARES = _Spares()


class _State:
    """The adaptive counts, the palette and the decoded canvas, as encoder and decoder share them;
    a context manager, which at its end hands its large arrays over to the next state (their
    counts are set afresh, the palette's lookup cleared, the hash tables' generation moved on)."""

    def __init__(self, layout: _Layout, channels: int, scheme: Scheme) -> None:
        self.layout, self.channels, self.scheme = layout, channels, scheme
        self.bucket = _buckets(scheme)
        self.cv = layout.canvas(ABSENT)
        self.sym = layout.canvas(scheme.slots, np.int8)  # a cell outside (`_buckets`; NEW: slots + 1)
        counts = (CONTEXTS, scheme.slots)
        self.slots = _SPARES.take(("slots", counts), lambda: np.empty(counts, np.int64))
        # The same counts without the far guess's part of the context, which learn sooner (how a
        # slot's weights read both: `kernels._front`).
        coarse = (CONTEXTS // FAR, scheme.slots)
        self.coarse = _SPARES.take(("coarse", coarse), lambda: np.empty(coarse, np.int64))
        self.palette, self.size = np.zeros(PALETTE, np.int64), np.zeros(1, np.int64)  # colours in it: size[0]
        # Each colour's palette index plus 1 (0: not there), the cell past the last for ABSENT.
        colours = (1 << (8 * channels)) + 1
        self.lookup = _SPARES.take(("lookup", colours), lambda: np.zeros(colours, np.int16))
        self.ranks = np.ones(PALETTE + 1, np.int64)  # the last: NEW, unless the scheme flags it
        self.fresh = np.ones((NEW_CONTEXTS, 2), np.int64)
        self.raw = np.ones((channels, RAW_CONTEXTS, 256), np.int64)
        if scheme.prior:
            self._start_from(prior.load(scheme.prior))
        else:
            self.slots.fill(1)
            self.coarse.fill(1)
        # Colours plus 1 (0: absent) under this state's generation (`kernels.GENERATION_SHIFT`).
        entries = len(scheme.hash_sets) << HASH_BITS
        self.tables, self.generation = _SPARES.take(
            ("tables", entries), lambda: (np.zeros(entries, np.int32), np.zeros(1, np.int64))
        )
        if self.generation[0] == GENERATIONS:
            self.tables.fill(0)
            self.generation[0] = 0
        self.generation[0] += 1
        self.plan = _hash_plan(scheme.hash_sets)

    def __enter__(self) -> "_State":
        return self

    def __exit__(self, *exc: object) -> None:
        self.lookup[self.palette[: self.size[0]]] = 0  # the only colours it holds
        _SPARES.give(("slots", self.slots.shape), self.slots)
        _SPARES.give(("coarse", self.coarse.shape), self.coarse)
        _SPARES.give(("lookup", self.lookup.size), self.lookup)
        _SPARES.give(("tables", self.tables.size), (self.tables, self.generation))

    def _start_from(self, counts: dict[str, np.ndarray]) -> None:
        """Start from a prior's counts (a grey image's channel from green's)."""
        if counts["slots"].shape != self.slots.shape or counts["raw"].shape[1:] != self.raw.shape[1:]:
            raise FormatError("the screen model's prior does not fit this payload version")
        np.copyto(self.slots, counts["slots"])
        np.copyto(self.coarse, counts["coarse"])
        for name in ("fresh", "ranks"):
            setattr(self, name, counts[name].copy())
        self.raw = counts["raw"][[1] if self.channels == 1 else [0, 1, 2]].copy()

    def occurrences(self) -> dict[str, np.ndarray]:
        """How often each symbol was coded in each context (from counts that started at 1)."""
        return {name: (getattr(self, name) - 1) // STEP for name in prior.TABLES}

    def settings(self) -> tuple:
        """What `kernels.segment` codes by besides the state: the scheme's and the layout's."""
        layout, scheme = self.layout, self.scheme
        return (
            layout.offsets, layout.period, *self.plan, _MIX, scheme.blend, scheme.new_flag, scheme.grouped,
            _PAIRS, _EQUALITIES, _FAR_CODE, self.bucket, layout.cw, STEP,
        )  # fmt: skip

    def state(self) -> tuple:
        """The arrays `kernels.segment` reads and changes."""
        return (
            self.cv, self.sym, self.tables, self.slots, self.coarse, self.fresh, self.ranks, self.raw,
            self.palette, self.lookup, self.size, self.generation,
        )  # fmt: skip


def encode(planes: np.ndarray, scheme: Scheme = SCHEME) -> tuple[bytes, float]:
    """(H, W, C) uint8 colour planes as a screen payload of `scheme`, and its ideal bits."""
    data, ideal, _ = _encode(planes, scheme)
    return data, ideal


def occurrences(planes: np.ndarray) -> dict[str, np.ndarray]:
    """How often each symbol is coded in each context of an image by the newest scheme started
    without a prior: what a prior learns from (`prior.from_occurrences`)."""
    return _encode(planes, replace(SCHEME, prior=""), counted=True)[2]


def _encode(
    planes: np.ndarray, scheme: Scheme, counted: bool = False
) -> tuple[bytes, float, dict[str, np.ndarray] | None]:
    """The payload, its ideal bits and (where `counted`) the coder's `occurrences` at the end."""
    h, w, channels = planes.shape
    grid = colours(planes)
    period = _period(grid) if scheme.period else 0
    layout = _Layout(h, w, period)
    with _State(layout, channels, scheme) as st:
        data, ideal = _encode_with(st, grid, period)
        return data, ideal, st.occurrences() if counted else None


def _encode_with(st: _State, grid: np.ndarray, period: int) -> tuple[bytes, float]:
    """The payload of an image's colours `grid` from a fresh state, and its ideal bits."""
    layout, scheme = st.layout, st.scheme
    canvas = layout.canvas(ABSENT)
    layout.place(canvas, grid)
    words, ideal = ([np.array([period], "<u4")], 32.0) if scheme.period else ([], 0.0)
    state, settings = st.state(), st.settings()
    for a, b in layout.segments():
        at, starts = layout.run(a, b)
        io = rans.sink(6 * len(at))  # a slot, a NEW flag, a rank and 3 channels a pixel, at most
        kernels.segment(state, settings, at, starts, canvas, io)
        seg = rans.finish(io, rans.NOTHING).astype("<u4")
        words += [np.array([len(seg)], "<u4"), seg]
        ideal += float(np.sum(PRECISION - np.log2(io[2][: io[0][1]]))) + 32.0  # and the segment's word count
    return np.concatenate(words).tobytes(), ideal


def _period(grid: np.ndarray) -> int:
    """The period of rows (4 to PERIOD) at which most pixels that repeat neither W nor N repeat
    the pixel that far up (rows of text or of a list, repeated), or 0 where none does."""
    h = grid.shape[0]
    fresh = np.ones(grid.shape, bool)
    fresh[:, 1:] &= grid[:, 1:] != grid[:, :-1]
    fresh[1:] &= grid[1:] != grid[:-1]
    hits = [int((fresh[p:] & (grid[p:] == grid[:-p])).sum()) for p in range(4, min(PERIOD, h - 1) + 1)]
    return 4 + int(np.argmax(hits)) if hits and max(hits) > 0 else 0


def decode(data: bytes, height: int, width: int, channels: int, scheme: Scheme = SCHEME) -> np.ndarray:
    """The (H, W, C) uint8 colour planes of a payload made by `encode` with `scheme`."""
    if len(data) % 4:
        raise FormatError("corrupted payload: ANS stream length is not a multiple of 4")
    if height * width * _min_bits(scheme) > 8 * len(data) + 64:
        raise FormatError(f"corrupted .nfc file: {len(data)} bytes cannot hold a {width}x{height} image")
    words = np.frombuffer(data, "<u4").astype(np.uint32)
    period = int(words[0]) if scheme.period and len(words) else 0
    if period > PERIOD or 0 < period < 4:
        raise FormatError("corrupted payload: a period of rows out of range")
    layout = _Layout(height, width, period)
    with _State(layout, channels, scheme) as st:
        grid = _decode_with(st, words)
    if (grid < 0).any() or (grid >= 1 << (8 * channels)).any():
        raise FormatError("corrupted payload: a pixel repeats no colour")
    return _planes(grid, channels)


def _decode_with(st: _State, words: np.ndarray) -> np.ndarray:
    """The colours (H, W) of a payload's words (`decode`) from a fresh state."""
    layout, scheme = st.layout, st.scheme
    pos = 1 if scheme.period else 0
    state, settings = st.state(), st.settings()
    for a, b in layout.segments():
        n = int(words[pos]) if pos < len(words) else -1
        if n < 0 or pos + 1 + n > len(words):
            raise FormatError("corrupted payload: a segment runs past the end")
        io = rans.source(words[pos + 1 : pos + 1 + n])
        pos += 1 + n
        at, starts = layout.run(a, b)
        kernels.segment(state, settings, at, starts, _NOTHING, io)
        if not rans.exhausted(io):
            raise FormatError("corrupted payload: data left after a segment's last pixel")
    if pos != len(words):
        raise FormatError("corrupted payload: data left after the last segment")
    return layout.image(st.cv)
