"""The screen model: screenshots and computer-made graphics, where most pixels repeat a neighbour.

A pixel is one whole colour (its grey value, or R << 16 | G << 8 | B). The image is cut into
tiles of TILE x TILE whose pixels decode in wavefronts t = 2i + j (`wavefronts`), wavefront t of
every tile at once as one vector (a tile reads nothing of the others' pixels, but every count,
table and the palette are shared), and each pixel codes as

1. the slot of the first of its candidates that holds its colour: its causal neighbours
   (`CANDIDATES`) and the colours that followed the same neighbourhoods before (`HASH_SETS`), or
   ESCAPE;
2. after an escape, its colour's rank in the palette (the colours first seen in earlier
   wavefronts, at most PALETTE of them) by distance from its median prediction, the candidates'
   colours last, or NEW, the palette's size;
3. after NEW, its channels: green against its median predictor, red and blue against green plus
   the median of their differences from green, each modulo 256.

Every symbol is coded under adaptive counts that the decoder rebuilds: they start at 1 and grow
by STEP with every symbol of an earlier wavefront. The slots' counts are kept per context: how
the hash guesses relate to W and N, which of W, N, NE and NW are equal, and what W and N coded.
The coder sees integer weights computed from the counts by integer arithmetic alone, so files
decode alike on every machine. The stream is cut into segments of about SEGMENT pixels (whole
wavefronts), each an ANS stream of its own, so that the encoder holds one segment's tables at once.
"""

__all__ = ["CANDIDATES", "ESCAPE", "PALETTE", "encode", "decode", "repeat_share", "colour_count"]

import constriction
import numpy as np

from nfcompress.coding.primitives import PRECISION, wavefronts
from nfcompress.errors import FormatError

# Causal neighbours (rows up, columns left): all on earlier wavefronts of t = 2i + j.
CANDIDATES = ((0, 1), (1, 0), (1, -1), (1, 1), (0, 2), (2, 0), (2, -1), (1, 2), (2, 1), (2, -2), (0, 3), (3, 0))
# Besides them, the colours that followed the same neighbourhoods last time: HASHES tables, keyed
# by a hash of some of CANDIDATES' colours, whose guesses come after the first four candidates.
HASH_SETS = (
    (0, 1, 2, 3, 4, 5),
    (0, 1, 2, 3),
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11),
)  # which of CANDIDATES each table's key reads
HASH_BITS = 22
HASHES = len(HASH_SETS)
K = len(CANDIDATES) + HASHES
_MIX = np.array([(0x9E3779B97F4A7C15 * (2 * k + 1)) % (1 << 64) | 1 for k in range(len(CANDIDATES))], np.uint64)
ESCAPE = K  # the slot symbol of a colour no candidate holds
SLOTS = K + 1
TOP, LEFT, RIGHT = 3, 3, 2  # canvas padding: rows above, columns left and right
ABSENT = -1  # a canvas cell outside the image
PALETTE = 512  # colours the palette keeps, at most
STEP = 24  # what a symbol adds to its count (each count starts at 1)
RAW_CONTEXTS = 8  # contexts of a NEW colour's channels
TILE = 256  # tiles decode side by side, a wavefront of each at once
SEGMENT = 1 << 17  # pixels of a segment, about (whole wavefronts)
# Slot contexts: table 0's guess as W, as N, absent (DISTINCT), the equalities of W, N, NE and NW
# (6 bits), the slot buckets (`_BUCKET`) of W's and N's symbols, and table 2's guess (FAR).
DISTINCT, EQUAL, BUCKETS, FAR = 6, 64, 5, 5
CONTEXTS = DISTINCT * EQUAL * BUCKETS * BUCKETS * FAR
_BUCKET = np.array([0, 1] + [2] * (K - 2) + [3, 4])  # slot 0, slot 1, slots 2.., ESCAPE, outside
_OUTSIDE = SLOTS  # the symbol of a canvas cell outside the image
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
# Every pixel costs at least this many bits (its slot's largest weight is 2^24 - SLOTS + 1 of
# 2^24): a payload bounds the size it can decode to, if loosely (a flat image costs about that).
MIN_BITS = -float(np.log2(((1 << PRECISION) - SLOTS + 1) / (1 << PRECISION)))


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

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.cw, self.size = LEFT + TILE + RIGHT, (TOP + TILE) * (LEFT + TILE + RIGHT)
        self.offsets = np.array([-u * self.cw - v for u, v in CANDIDATES], np.int64)
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
                fronts[t].append(np.add.outer(bases, (TOP + i) * self.cw + LEFT + j).ravel())
        self.fronts = [np.sort(np.concatenate(f)) for f in fronts]

    def canvas(self, fill: int, dtype: type = np.int32) -> np.ndarray:
        """A flat canvas of every tile, every cell `fill`."""
        return np.full(len(self.tiles) * self.size, fill, dtype)

    def cells(self, k: int) -> np.ndarray:
        """The slice of a canvas that holds tile k (TOP + TILE rows of cw cells)."""
        return np.s_[k * self.size : (k + 1) * self.size]

    def place(self, canvas: np.ndarray, image: np.ndarray) -> None:
        """Write an (H, W) image into a canvas's tiles."""
        for k, (y, x, th, tw) in enumerate(self.tiles):
            canvas[self.cells(k)].reshape(TOP + TILE, self.cw)[TOP : TOP + th, LEFT : LEFT + tw] = image[
                y : y + th, x : x + tw
            ]

    def image(self, canvas: np.ndarray) -> np.ndarray:
        """The (H, W) image a canvas's tiles hold."""
        out = np.empty((self.h, self.w), canvas.dtype)
        for k, (y, x, th, tw) in enumerate(self.tiles):
            out[y : y + th, x : x + tw] = canvas[self.cells(k)].reshape(TOP + TILE, self.cw)[
                TOP : TOP + th, LEFT : LEFT + tw
            ]
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


def _key(colours: np.ndarray) -> np.ndarray:
    """A hash of each row of colours (n, m), HASH_BITS wide: wrapping uint64 products."""
    h = np.zeros(len(colours), np.uint64)
    for c in range(colours.shape[1]):
        h = (h ^ colours[:, c].astype(np.uint64)) * _MIX[c]
    return (h >> np.uint64(64 - HASH_BITS)).astype(np.int64)


def _slot_tables(cand: np.ndarray, sym: np.ndarray, at: np.ndarray, cw: int) -> tuple[np.ndarray, np.ndarray]:
    """The contexts of pixels at flat indices `at` with candidates `cand` (n, K), and which slots
    each may code (n, SLOTS): every candidate present, and ESCAPE."""
    allowed = np.ones((len(cand), SLOTS), bool)
    allowed[:, :K] = cand != ABSENT
    w, n, ne, nw, g = cand[:, 0], cand[:, 1], cand[:, 2], cand[:, 3], cand[:, 4]
    equal = (w == n) | (w == ne) << 1 | (w == nw) << 2 | (n == ne) << 3 | (n == nw) << 4 | (ne == nw) << 5
    distinct = np.minimum((g == w) + 2 * (g == n) + 3 * (g == ABSENT), DISTINCT - 1)
    sw, sn = _BUCKET[sym[at - 1]], _BUCKET[sym[at - cw]]
    g2 = cand[:, 6]
    far = np.where(g2 == ABSENT, 3, np.where(g2 == w, 0, np.where(g2 == n, 1, np.where(g2 == g, 4, 2))))
    return (((distinct * EQUAL + equal) * BUCKETS + sw) * BUCKETS + sn) * FAR + far, allowed


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

    def code(self, weights: np.ndarray, symbols: np.ndarray | None) -> np.ndarray:
        if self.coder is None:
            self.pushes.append((symbols, weights))
            return symbols
        return self.coder.decode(_CATEGORICAL, weights).astype(np.int64)


class _State:
    """The adaptive counts, the palette and the decoded canvas, as encoder and decoder share them."""

    def __init__(self, layout: _Layout, channels: int) -> None:
        self.layout, self.channels = layout, channels
        self.cv = layout.canvas(ABSENT)
        self.sym = layout.canvas(_OUTSIDE, np.int8)
        self.slots = np.ones((CONTEXTS, SLOTS), np.int64)
        # The same counts without the far guess's part of the context, which learn sooner: a slot's
        # weights read 4 times its context's counts plus these.
        self.coarse = np.ones((CONTEXTS // FAR, SLOTS), np.int64)
        self.palette = np.zeros(0, np.int64)
        self.ranks = np.ones(PALETTE + 1, np.int64)  # the last: NEW
        self.raw = np.ones((channels, RAW_CONTEXTS, 256), np.int64)
        self.tables = np.full((HASHES, 1 << HASH_BITS), ABSENT, np.int32)

    def front(self, at: np.ndarray, io: _Coder, x: np.ndarray | None = None) -> np.ndarray:
        """Code (x given) or decode one wavefront of pixels at flat indices `at`; its colours."""
        near = self.cv[at[:, None] + self.layout.offsets[None, :]]
        keys = [_key(near[:, list(s)]) for s in HASH_SETS]
        guesses = np.stack([self.tables[k][key] for k, key in enumerate(keys)], 1)
        cand = np.concatenate([near[:, :4], guesses, near[:, 4:]], 1)
        ctx, allowed = _slot_tables(cand, self.sym, at, self.layout.cw)
        slot = None
        if x is not None:
            hit = (cand == x[:, None]) & allowed[:, :K]
            slot = np.where(hit.any(1), np.argmax(hit, 1), ESCAPE)
        slot = io.code(_weights((4 * self.slots[ctx] + self.coarse[ctx // FAR]) * allowed), slot)
        esc = slot == ESCAPE
        if x is None:
            x = np.full(len(at), ABSENT, np.int64)
            matched = np.flatnonzero(~esc)
            x[matched] = cand[matched, np.minimum(slot[matched], K - 1)]
        if esc.any():
            x[esc] = self._escapes(at[esc], cand[esc], io, x[esc] if io.coder is None else None)
        self.cv[at] = x
        self.sym[at] = slot
        np.add.at(self.slots, (ctx, slot), STEP)
        np.add.at(self.coarse, (ctx // FAR, slot), STEP)
        for k, key in enumerate(keys):
            last = len(at) - 1 - np.unique(key[::-1], return_index=True)[1]
            self.tables[k][key[last]] = x[last]
        return x

    def _escapes(self, at: np.ndarray, cand: np.ndarray, io: _Coder, x: np.ndarray | None) -> np.ndarray:
        """The colours of escaped pixels: a palette colour by its rank in distance from the
        pixel's median prediction, or NEW and its channels."""
        near = _neighbours(self.cv, at, self.layout.cw, self.channels)
        pred = [_med(*c) for c in near]
        p = len(self.palette)
        rank = np.full(len(at), p, np.int64)
        if p:
            pal = [self.palette] if self.channels == 1 else [(self.palette >> s) & 255 for s in (16, 8, 0)]
            dist = sum(np.abs(q[None, :].astype(np.int32) - r[:, None].astype(np.int32)) for q, r in zip(pal, pred))
            keys = dist.astype(np.int64) * (PALETTE * 2) + np.arange(p)  # distance first, then the palette's order
            # An escaped colour is no candidate's: those entries go last, out of the way.
            taken = _palette_index(self.palette, cand.ravel()).reshape(cand.shape)
            rows = np.broadcast_to(np.arange(len(at))[:, None], taken.shape)
            keys[rows[taken < p], taken[taken < p]] += _LAST
            if x is not None:
                index = _palette_index(self.palette, x)
                own = np.take_along_axis(keys, np.minimum(index, p - 1)[:, None], 1)[:, 0]
                rank = np.where(index < p, (keys < own[:, None]).sum(1), p)
            counts = np.concatenate([self.ranks[:p], self.ranks[-1:]])
            rank = io.code(np.repeat(_weights(counts[None, :]), len(at), axis=0), rank)
            np.add.at(self.ranks, np.where(rank < p, rank, PALETTE), STEP)
        out = np.zeros(len(at), np.int64) if x is None else x.copy()
        known = np.flatnonzero(rank < p)
        if x is None and len(known):
            r = rank[known]
            top = int(r.max())  # the smallest top + 1 keys of each row, in order: ranks are mostly small
            order = np.partition(keys[known], top, axis=1)[:, : top + 1] if top + 1 < p else keys[known]
            order.sort(1)
            out[known] = self.palette[order[np.arange(len(known)), r] % (PALETTE * 2)]
        new = np.flatnonzero(rank == p)
        if len(new):
            out[new] = self._raw(new, near, io, None if x is None else x[new])
            fresh, first = np.unique(out[new], return_index=True)
            self.palette = np.concatenate([self.palette, fresh[np.argsort(first)]])[:PALETTE]
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
            r = io.code(_weights(self.raw[k])[ctx], r)
            np.add.at(self.raw[k], (ctx, r), STEP)
            got[k] = (pred + r) & 255
            if k == 1 or self.channels == 1:
                g_err = ((r + 128) & 255) - 128
        if self.channels == 1:
            return got[0]
        return sum(got[k] << s for k, s in zip(range(3), shifts))


_LAST = 1 << 40  # added to the rank key of a palette entry that cannot be the colour


def _palette_index(palette: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each colour's index in the palette, or the palette's size where it is not there."""
    order = np.argsort(palette, kind="stable")
    s = palette[order]
    pos = np.minimum(np.searchsorted(s, x), len(s) - 1)
    return np.where(s[pos] == x, order[pos], len(palette))


def encode(planes: np.ndarray) -> tuple[bytes, float]:
    """(H, W, C) uint8 colour planes as a screen payload, and its ideal bits."""
    h, w, channels = planes.shape
    layout = _Layout(h, w)
    st = _State(layout, channels)
    colours = layout.canvas(ABSENT)
    layout.place(colours, _colours(planes))
    words, ideal = [], 0.0
    for a, b in layout.segments():
        io = _Coder()
        for t in range(a, b):
            st.front(layout.fronts[t], io, colours[layout.fronts[t]])
        coder = constriction.stream.stack.AnsCoder()
        for sym, weights in reversed(io.pushes):
            coder.encode_reverse(sym.astype(np.int32), _CATEGORICAL, weights)
            ideal += float(np.sum(PRECISION - np.log2(weights[np.arange(len(sym)), sym] + 1)))
        seg = coder.get_compressed().astype("<u4")
        words += [np.array([len(seg)], "<u4"), seg]
    return np.concatenate(words).tobytes(), ideal + 32.0 * (len(words) // 2)  # each segment's word count


def decode(data: bytes, height: int, width: int, channels: int) -> np.ndarray:
    """The (H, W, C) uint8 colour planes of a payload made by `encode`."""
    if len(data) % 4:
        raise FormatError("corrupted payload: ANS stream length is not a multiple of 4")
    if height * width * MIN_BITS > 8 * len(data) + 64:
        raise FormatError(f"corrupted .nfc file: {len(data)} bytes cannot hold a {width}x{height} image")
    words = np.frombuffer(data, "<u4").astype(np.uint32)
    layout = _Layout(height, width)
    st = _State(layout, channels)
    pos = 0
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
