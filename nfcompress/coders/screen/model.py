"""The screen model: screenshots and computer-made graphics, where most pixels repeat a neighbour.

A pixel is one whole colour (its grey value, or R << 16 | G << 8 | B). The image is cut into
tiles of TILE x TILE whose pixels decode in wavefronts t = 2i + j (`wavefronts`), wavefront t of
every tile at once as one vector (a tile reads nothing of the others' pixels, but every count,
table and the palette are shared), and each pixel codes as

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
wavefronts), each an ANS stream of its own, so that the encoder holds one segment's tables at once.
What differs between payload versions is a `Scheme` (`SCHEMES`).
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
    "repeat_share",
    "colour_count",
]

from dataclasses import dataclass, replace

import constriction
import numpy as np

from nfcompress.coders.screen import prior
from nfcompress.coding.primitives import PRECISION, wavefronts
from nfcompress.errors import FormatError

# Causal neighbours (rows up, columns left): all on earlier wavefronts of t = 2i + j.
CANDIDATES = ((0, 1), (1, 0), (1, -1), (1, 1), (0, 2), (2, 0), (2, -1), (1, 2), (2, 1), (2, -2), (0, 3), (3, 0))
HASH_BITS = 22
_PRIOR_12 = "77f5c327a2e67d8ad17e94ea2df3ac6542760df93b34109eb32a713e1d604700"  # prior.safetensors
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
    grouped: bool  # a wavefront's residuals of one context are coded together (`_residuals`)
    prior: str = ""  # the sha256 of the learned prior the counts start from (`prior`), or none
    period: bool = False  # the last candidate: the pixel a period of rows up (`_period`)

    @property
    def slots(self) -> int:
        """The slot symbols: every candidate, then ESCAPE (`escape`)."""
        return len(CANDIDATES) + len(self.hash_sets) + self.period + 1

    @property
    def escape(self) -> int:
        """The slot symbol of a colour no candidate holds."""
        return self.slots - 1


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
ABSENT = -1  # a canvas cell outside the image
PALETTE = 512  # colours the palette keeps, at most
STEP = 24  # what a symbol adds to its count (each count starts at 1)
RAW_CONTEXTS = 8  # contexts of a NEW colour's channels
GROUPED = 64  # from this many NEW colours in a wavefront, their residuals are coded by context
TILE = 256  # tiles decode side by side, a wavefront of each at once
SEGMENT = 1 << 17  # pixels of a segment, about (whole wavefronts)
# Slot contexts: table 0's guess as W, as N, absent (DISTINCT), the equalities of W, N, NE and NW
# (6 bits), the slot buckets (`_buckets`) of W's and N's symbols, and table 2's guess (FAR).
DISTINCT, EQUAL, BUCKETS, FAR = 6, 64, 5, 5
CONTEXTS = DISTINCT * EQUAL * BUCKETS * BUCKETS * FAR
NEW_CONTEXTS = 16  # which of W, N, NE and NW were NEW colours
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def _buckets(scheme: Scheme) -> np.ndarray:
    """The bucket of each symbol `sym` holds: slot 0, slot 1, slots 2.., ESCAPE, outside, NEW."""
    return np.array([0, 1] + [2] * (scheme.slots - 3) + [3, 4, 3])


def _min_bits(scheme: Scheme) -> float:
    """Bits every pixel costs at least (its slot's largest weight is 2^24 - slots + 1 of 2^24): a
    payload bounds the size it can decode to, if loosely (a flat image costs about that)."""
    return -float(np.log2(((1 << PRECISION) - scheme.slots + 1) / (1 << PRECISION)))


def _colours(planes: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 planes as one colour per pixel (int64)."""
    c = planes.astype(np.int64)
    return c[..., 0] if c.shape[2] == 1 else (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def _planes(colours: np.ndarray, channels: int) -> np.ndarray:
    """The inverse of `_colours`."""
    if channels == 1:
        return colours[..., None].astype(np.uint8)
    return np.stack([(colours >> s) & 255 for s in (16, 8, 0)], axis=-1).astype(np.uint8)


def colour_count(planes: np.ndarray) -> int:
    """How many distinct colours an image has."""
    return int(np.unique(_colours(planes)).size)


def repeat_share(planes: np.ndarray) -> float:
    """The share of pixels whose colour equals their W, N, NW or NE neighbour's: screen content
    shows 0.8 and more, photos little (a cheap test, one pass of vector operations)."""
    c = _colours(planes)
    if c.size < 2:
        return 0.0
    same = np.zeros(c.shape, bool)
    same[:, 1:] |= c[:, 1:] == c[:, :-1]
    same[1:, :] |= c[1:, :] == c[:-1, :]
    same[1:, 1:] |= c[1:, 1:] == c[:-1, :-1]
    same[1:, :-1] |= c[1:, :-1] == c[:-1, 1:]
    return float(same.mean())


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
        self.fronts = [np.sort(np.concatenate(f)) for f in fronts]

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
        out, start, n = [], 0, 0
        for t, f in enumerate(self.fronts):
            n += len(f)
            if n >= SEGMENT:
                out.append((start, t + 1))
                start, n = t + 1, 0
        if start < len(self.fronts):
            out.append((start, len(self.fronts)))
        return out


def _keys(near: np.ndarray, hash_sets: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Each pixel's key (n, tables) in every table, from its CANDIDATES' colours `near`: a hash
    HASH_BITS wide of the set's colours (wrapping uint64 products, one set's hash continuing the
    shorter set it extends), plus the table's offset in one flat table."""
    colours = near.astype(np.uint64).T  # an absent -1 as 2^64 - 1
    h = np.zeros(len(near), np.uint64)
    out = np.empty((len(hash_sets), len(near)), np.uint64)
    done = 0
    for k in sorted(range(len(hash_sets)), key=lambda k: len(hash_sets[k])):
        for c in hash_sets[k][done:]:
            np.bitwise_xor(h, colours[c], out=h)
            np.multiply(h, _MIX[c], out=h)
        done = len(hash_sets[k])
        np.right_shift(h, np.uint64(64 - HASH_BITS), out=out[k])
    return (out.astype(np.int64) + (np.arange(len(hash_sets), dtype=np.int64) << HASH_BITS)[:, None]).T


def _slot_tables(
    cand: np.ndarray, sym: np.ndarray, at: np.ndarray, cw: int, bucket: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The contexts of pixels at flat indices `at` with candidates `cand` (n, slots - 1), and which
    slots each may code (n, slots): every candidate present, and ESCAPE (`bucket`: `_buckets`)."""
    allowed = np.ones((len(cand), cand.shape[1] + 1), bool)
    allowed[:, :-1] = cand != ABSENT
    bits = (cand[:, _PAIRS[0]] == cand[:, _PAIRS[1]]) @ _POWERS  # which pairs are equal
    bits |= ~allowed[:, 4] << len(_POWERS) | ~allowed[:, 6] << (len(_POWERS) + 1)  # G0, G2 absent
    sw, sn = bucket[sym[at - 1]], bucket[sym[at - cw]]
    return (_EQUALITIES[bits] * BUCKETS + sw) * BUCKETS * FAR + sn * FAR + _FAR_CODE[bits], allowed


def _equality_tables() -> tuple[np.ndarray, np.ndarray]:
    """What `_slot_tables` reads of the bits of which candidates are equal (`_PAIRS`, then G0
    absent, G2 absent): the context's first part, distinct * EQUAL + equal, and its last, far:
    equal the equalities of W, N, NE and NW (6 bits), distinct G0 as W (1), as N (2), absent (3),
    far G2 absent (3), as W (0), as N (1), as G0 (4), else 2."""
    bits = np.arange(1 << (len(_POWERS) + 2))
    on = [(bits >> k) & 1 for k in range(len(_POWERS) + 2)]
    equal = sum(on[k] << k for k in range(6))
    distinct = np.minimum(on[6] + 2 * on[7] + 3 * on[11], DISTINCT - 1)
    far = np.where(on[12] == 1, 3, np.where(on[8] == 1, 0, np.where(on[9] == 1, 1, np.where(on[10] == 1, 4, 2))))
    return distinct * EQUAL + equal, far


# The candidate pairs whose equality the slot context reads: W = N, W = NE, W = NW, N = NE, N = NW,
# NE = NW, G0 = W, G0 = N, G2 = W, G2 = N, G2 = G0 (candidates 0-3 W, N, NE, NW; 4 G0; 6 G2).
_PAIRS = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (4, 0), (4, 1), (6, 0), (6, 1), (6, 4)]).T
_POWERS = 1 << np.arange(len(_PAIRS[0]))
_EQUALITIES, _FAR_CODE = _equality_tables()


def _weights(counts: np.ndarray) -> np.ndarray:
    """Integer weights (n, A) from counts (n, A; zero where a symbol cannot occur) that sum to
    2^PRECISION - A in every row (the coder adds 1 to each): integer arithmetic only."""
    a = counts.shape[1]
    total = (1 << PRECISION) - a
    w = counts * total // counts.sum(1, keepdims=True)
    top = np.argmax(w, 1)
    w[np.arange(len(w)), top] += total - w.sum(1)
    return w.astype(np.float64)


def _neighbours(cv: np.ndarray, at: np.ndarray, cw: int, channels: int) -> list[np.ndarray]:
    """Each channel's W, N and NW (3, n) of pixels at flat indices `at` (0 outside the image)."""
    c = np.maximum(np.stack([cv[at - 1], cv[at - cw], cv[at - cw - 1]]), 0)
    return [c] if channels == 1 else [(c >> s) & 255 for s in (16, 8, 0)]


def _med(w: np.ndarray, n: np.ndarray, nw: np.ndarray) -> np.ndarray:
    """The median predictor: the median of W, N and W + N - NW."""
    return np.maximum(np.minimum(w, n), np.minimum(np.maximum(w, n), w + n - nw))


def _bucket(v: np.ndarray) -> np.ndarray:
    """Magnitudes in RAW_CONTEXTS buckets: their bit lengths, capped."""
    return np.minimum(np.frexp(np.abs(v).astype(np.float64))[1], RAW_CONTEXTS - 1)


class _Coder:
    """One side of the stream: an encoder collects each wavefront's symbols with their weights,
    a decoder pops them; `code(weights, symbols)` gives the symbols either way."""

    def __init__(self, coder=None) -> None:
        self.coder, self.pushes = coder, []

    def code(self, weights: np.ndarray, symbols: np.ndarray | None, n: int = 0) -> np.ndarray:
        """Symbols under weights (n, A), a row each, or under one row (A,) for all `n` of them (of
        one symbol: nothing is coded)."""
        if weights.ndim == 1 and len(weights) == 1:
            return np.zeros(n, np.int64)
        if self.coder is None:
            self.pushes.append((symbols, weights))
            return symbols
        if weights.ndim == 1:
            return self.coder.decode(_fixed(weights), n).astype(np.int64)
        return self.coder.decode(_CATEGORICAL, weights).astype(np.int64)


def _fixed(weights: np.ndarray) -> constriction.stream.model.Categorical:
    """One categorical distribution for many symbols (a row of `_weights`)."""
    return constriction.stream.model.Categorical(weights, perfect=False)


class _State:
    """The adaptive counts, the palette and the decoded canvas, as encoder and decoder share them."""

    def __init__(self, layout: _Layout, channels: int, scheme: Scheme) -> None:
        self.layout, self.channels, self.scheme = layout, channels, scheme
        self.escape, self.bucket = scheme.escape, _buckets(scheme)
        self.outside, self.new = scheme.slots, scheme.slots + 1  # `sym` of a cell outside, of a NEW colour
        self.cv = layout.canvas(ABSENT)
        self.sym = layout.canvas(self.outside, np.int8)
        self.slots = np.ones((CONTEXTS, scheme.slots), np.int64)
        # The same counts without the far guess's part of the context, which learn sooner (how a
        # slot's weights read both: `_slot_weights`).
        self.coarse = np.ones((CONTEXTS // FAR, scheme.slots), np.int64)
        self.palette = np.zeros(0, np.int64)
        # Each colour's palette index plus 1 (0: not there), the cell past the last for ABSENT.
        self.lookup = np.zeros((1 << (8 * channels)) + 1, np.int16)
        self.channel_palette = [self.palette] * channels
        self.ranks = np.ones(PALETTE + 1, np.int64)  # the last: NEW, unless the scheme flags it
        self.fresh = np.ones((NEW_CONTEXTS, 2), np.int64)
        self.raw = np.ones((channels, RAW_CONTEXTS, 256), np.int64)
        if scheme.prior:
            self._start_from(prior.load(scheme.prior))
        # Colours plus 1 (0: absent), so that the tables start as zeros the system gives lazily.
        self.tables = np.zeros(len(scheme.hash_sets) << HASH_BITS, np.int32)

    def _start_from(self, counts: dict[str, np.ndarray]) -> None:
        """Start from a prior's counts (a grey image's channel from green's)."""
        if counts["slots"].shape != self.slots.shape or counts["raw"].shape[1:] != self.raw.shape[1:]:
            raise FormatError("the screen model's prior does not fit this payload version")
        for name in ("slots", "coarse", "fresh", "ranks"):
            setattr(self, name, counts[name].copy())
        self.raw = counts["raw"][[1] if self.channels == 1 else [0, 1, 2]].copy()

    def occurrences(self) -> dict[str, np.ndarray]:
        """How often each symbol was coded in each context (from counts that started at 1)."""
        return {name: (getattr(self, name) - 1) // STEP for name in prior.TABLES}

    def front(self, at: np.ndarray, io: _Coder, x: np.ndarray | None = None) -> np.ndarray:
        """Code (x given) or decode one wavefront of pixels at flat indices `at`; its colours."""
        near = self.cv[at[:, None] + self.layout.offsets[None, :]]
        keys = _keys(near, self.scheme.hash_sets)
        parts = [near[:, :4], self.tables[keys] - 1, near[:, 4:]]
        if self.scheme.period:
            period = self.layout.period
            parts.append((self.cv[at + period] if period else np.full(len(at), ABSENT, np.int32))[:, None])
        cand = np.concatenate(parts, 1)
        ctx, allowed = _slot_tables(cand, self.sym, at, self.layout.cw, self.bucket)
        slot = None
        if x is not None:
            hit = (cand == x[:, None]) & allowed[:, :-1]
            slot = np.where(hit.any(1), np.argmax(hit, 1), self.escape)
        slot = io.code(self._slot_weights(ctx, allowed), slot)
        esc = slot == self.escape
        self.sym[at] = slot
        if x is None:
            x = np.full(len(at), ABSENT, np.int64)
            matched = np.flatnonzero(~esc)
            x[matched] = cand[matched, slot[matched]]
        if esc.any():
            x[esc] = self._escapes(at[esc], cand[esc], io, x[esc] if io.coder is None else None)
        self.cv[at] = x
        np.add.at(self.slots, (ctx, slot), STEP)
        np.add.at(self.coarse, (ctx // FAR, slot), STEP)
        flat = keys.T.ravel()  # table after table, each in the wavefront's order
        last = flat.size - 1 - np.unique(flat[::-1], return_index=True)[1]  # a key's last pixel wins
        self.tables[flat[last]] = np.tile(x + 1, keys.shape[1])[last]
        return x

    def _slot_weights(self, ctx: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """The slots' weights: their context's counts, with the coarse counts as a prior of weight
        `blend` (normalised to 12 bits: every product stays within int64), or (blend 0) 4 times the
        counts plus the coarse ones."""
        coarse = self.coarse[ctx // FAR] * allowed
        if not self.scheme.blend:
            return _weights(4 * self.slots[ctx] * allowed + coarse)
        prior = (coarse << 12) // coarse.sum(1, keepdims=True)
        return _weights(((self.slots[ctx] * allowed) << 12) + self.scheme.blend * prior + allowed)

    def _is_new(self, at: np.ndarray, index: np.ndarray | None, io: _Coder) -> np.ndarray:
        """Whether each escaped pixel's colour is NEW (1) or in the palette (0), under counts of
        which of its W, N, NE and NW were NEW (`index`: the colours' palette indices, encoding)."""
        ctx = (self.sym[at[:, None] + self.layout.offsets[:4]] == self.new) @ _POWERS[:4]  # W, N, NE, NW
        flags = None if index is None else (index == len(self.palette)).astype(np.int64)
        new = io.code(_weights(self.fresh[ctx]), flags)
        np.add.at(self.fresh, (ctx, new), STEP)
        return new

    def _escapes(self, at: np.ndarray, cand: np.ndarray, io: _Coder, x: np.ndarray | None) -> np.ndarray:
        """The colours of escaped pixels: a palette colour by its rank (`_rank`), or NEW and its
        channels (`_raw`); NEW is flagged first (`_is_new`) or, without the scheme's flag, the
        last rank."""
        near = _neighbours(self.cv, at, self.layout.cw, self.channels)
        p = len(self.palette)
        index = None if x is None or not p else self._palette_index(x)
        out = np.zeros(len(at), np.int64) if x is None else x.copy()
        if not p:
            new = np.ones(len(at), bool)
        elif self.scheme.new_flag:
            new = self._is_new(at, index, io) == 1
            if not new.all():  # (no rank to code where every colour is NEW)
                self._rank(np.flatnonzero(~new), near, cand, io, index, out)
        else:
            new = self._rank(np.arange(len(at)), near, cand, io, index, out) == p
        fresh = np.flatnonzero(new)
        if len(fresh):
            self.sym[at[fresh]] = self.new
            out[fresh] = self._raw(fresh, near, io, None if x is None else x[fresh])
            colours, first = np.unique(out[fresh], return_index=True)
            self._extend(colours[np.argsort(first)])
        return out

    def _rank(
        self,
        rows: np.ndarray,
        near: list[np.ndarray],
        cand: np.ndarray,
        io: _Coder,
        index: np.ndarray | None,
        out: np.ndarray,
    ) -> np.ndarray:
        """Code (`index`: the escaped colours' palette indices) or decode the ranks of escaped
        pixels `rows` in the palette's order for each (`_rank_keys`), NEW last unless flagged
        apart, and write the decoded colours into `out`; the ranks."""
        p = len(self.palette)
        rank = None
        if index is not None:
            rank = np.full(len(rows), p, np.int64)
            known = np.flatnonzero(index[rows] < p)
            if len(known):
                keys = self._rank_keys(rows[known], near, cand)
                own = np.take_along_axis(keys, index[rows[known]][:, None], 1)[:, 0]
                rank[known] = (keys < own[:, None]).sum(1)
        counts = self.ranks[:p] if self.scheme.new_flag else np.concatenate([self.ranks[:p], self.ranks[-1:]])
        rank = io.code(_weights(counts[None, :])[0], rank, len(rows))
        np.add.at(self.ranks, np.where(rank < p, rank, PALETTE), STEP)
        known = np.flatnonzero(rank < p)
        if index is None and len(known):
            keys, r = self._rank_keys(rows[known], near, cand), rank[known]
            top = int(r.max())  # the smallest top + 1 keys of each row, in order: ranks are mostly small
            order = np.partition(keys, top, axis=1)[:, : top + 1] if top + 1 < p else keys
            order.sort(1)
            out[rows[known]] = self.palette[order[np.arange(len(known)), r] % (PALETTE * 2)]
        return rank

    def _palette_index(self, x: np.ndarray) -> np.ndarray:
        """Each colour's index in the palette (x: colours or ABSENT), or the palette's size where
        it is not there."""
        index = self.lookup[x].astype(np.int64) - 1
        return np.where(index < 0, len(self.palette), index)

    def _extend(self, colours: np.ndarray) -> None:
        """Add NEW colours to the palette while it has room."""
        colours = colours[: PALETTE - len(self.palette)]
        if not len(colours):
            return
        self.lookup[colours] = len(self.palette) + 1 + np.arange(len(colours))
        self.palette = np.concatenate([self.palette, colours])
        c = self.palette.astype(np.int32)
        self.channel_palette = [c] if self.channels == 1 else [(c >> s) & 255 for s in (16, 8, 0)]

    def _rank_keys(self, rows: np.ndarray, near: list[np.ndarray], cand: np.ndarray) -> np.ndarray:
        """The palette's sort keys (n, palette) for escaped pixels `rows`: distance from their
        median prediction, then the palette's order; the candidates' colours last, out of the way
        (an escaped colour is none of them)."""
        p = len(self.palette)
        pred = [_med(*c[:, rows]) for c in near]
        dist = sum(np.abs(q[None, :] - r[:, None].astype(np.int32)) for q, r in zip(self.channel_palette, pred))
        keys = dist.astype(np.int64) * (PALETTE * 2) + np.arange(p)
        c = cand[rows]
        taken = self._palette_index(c)
        at_row = np.broadcast_to(np.arange(len(rows))[:, None], taken.shape)
        keys[at_row[taken < p], taken[taken < p]] += _LAST
        return keys

    def _residuals(self, k: int, ctx: np.ndarray, r: np.ndarray | None, io: _Coder) -> np.ndarray:
        """Code (r given) or decode channel k's residuals under their contexts' counts: row by row,
        or (the scheme's `grouped`, from GROUPED rows) context after context, each context's
        rows under one distribution."""
        table = _weights(self.raw[k])
        if not self.scheme.grouped or len(ctx) < GROUPED:
            return io.code(table[ctx], r)
        out = np.empty(len(ctx), np.int64)
        for c in np.unique(ctx):
            rows = np.flatnonzero(ctx == c)
            out[rows] = io.code(table[c], None if r is None else r[rows], len(rows))
        return out

    def _raw(self, rows: np.ndarray, near: list[np.ndarray], io: _Coder, x: np.ndarray | None) -> np.ndarray:
        """NEW colours channel by channel: green (or grey) against its median predictor, red and
        blue against green plus the median of their differences from green; each under counts
        of its context (the gradient around it; for red and blue, green's error)."""
        order = [0] if self.channels == 1 else [1, 0, 2]  # green, red, blue
        shifts = [0] if self.channels == 1 else [16, 8, 0]
        want = None if x is None else [x] if self.channels == 1 else [(x >> s) & 255 for s in (16, 8, 0)]
        got = [None] * len(order)
        g_err = None
        for k in order:
            w, n, nw = (v[rows] for v in near[k])
            if k == 1 or self.channels == 1:
                pred, ctx = _med(w, n, nw), _bucket(np.abs(w - nw) + np.abs(n - nw))
            else:
                gw, gn, gnw = (v[rows] for v in near[1])
                pred, ctx = got[1] + _med(w - gw, n - gn, nw - gnw), _bucket(g_err)
            pred = np.clip(pred, 0, 255)
            r = None if want is None else (want[k] - pred) & 255
            r = self._residuals(k, ctx, r, io)
            np.add.at(self.raw[k], (ctx, r), STEP)
            got[k] = (pred + r) & 255
            if k == 1 or self.channels == 1:
                g_err = ((r + 128) & 255) - 128
        if self.channels == 1:
            return got[0]
        return sum(got[k] << s for k, s in zip(range(3), shifts))


_LAST = 1 << 40  # added to the rank key of a palette entry that cannot be the colour


def encode(planes: np.ndarray, scheme: Scheme = SCHEME) -> tuple[bytes, float]:
    """(H, W, C) uint8 colour planes as a screen payload of `scheme`, and its ideal bits."""
    data, ideal, _ = _encode(planes, scheme)
    return data, ideal


def occurrences(planes: np.ndarray) -> dict[str, np.ndarray]:
    """How often each symbol is coded in each context of an image by the newest scheme started
    without a prior: what a prior learns from (`prior.from_occurrences`)."""
    return _encode(planes, replace(SCHEME, prior=""))[2].occurrences()


def _encode(planes: np.ndarray, scheme: Scheme) -> tuple[bytes, float, _State]:
    """The payload, its ideal bits and the coder's state at the end."""
    h, w, channels = planes.shape
    grid = _colours(planes)
    period = _period(grid) if scheme.period else 0
    layout = _Layout(h, w, period)
    st = _State(layout, channels, scheme)
    colours = layout.canvas(ABSENT)
    layout.place(colours, grid)
    words, ideal = ([np.array([period], "<u4")], 32.0) if scheme.period else ([], 0.0)
    for a, b in layout.segments():
        io = _Coder()
        for t in range(a, b):
            st.front(layout.fronts[t], io, colours[layout.fronts[t]])
        coder = constriction.stream.stack.AnsCoder()
        for sym, weights in reversed(io.pushes):
            if weights.ndim == 1:
                coder.encode_reverse(sym.astype(np.int32), _fixed(weights))
                ideal += float(np.sum(PRECISION - np.log2(weights[sym] + 1)))
            else:
                coder.encode_reverse(sym.astype(np.int32), _CATEGORICAL, weights)
                ideal += float(np.sum(PRECISION - np.log2(weights[np.arange(len(sym)), sym] + 1)))
        seg = coder.get_compressed().astype("<u4")
        words += [np.array([len(seg)], "<u4"), seg]
        ideal += 32.0  # the segment's word count
    return np.concatenate(words).tobytes(), ideal, st


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
    st = _State(layout, channels, scheme)
    pos = 1 if scheme.period else 0
    for a, b in layout.segments():
        n = int(words[pos]) if pos < len(words) else -1
        if n < 0 or pos + 1 + n > len(words):
            raise FormatError("corrupted payload: a segment runs past the end")
        coder = constriction.stream.stack.AnsCoder(words[pos + 1 : pos + 1 + n])
        pos += 1 + n
        io = _Coder(coder)
        for t in range(a, b):
            st.front(layout.fronts[t], io)
        if not coder.is_empty():
            raise FormatError("corrupted payload: data left after a segment's last pixel")
    if pos != len(words):
        raise FormatError("corrupted payload: data left after the last segment")
    grid = layout.image(st.cv)
    if (grid < 0).any() or (grid >= 1 << (8 * channels)).any():
        raise FormatError("corrupted payload: a pixel repeats no colour")
    return _planes(grid, channels)
