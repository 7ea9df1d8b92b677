"""The screen model's per-pixel loops, compiled (numba): what `model._State` does for every pixel
of a wavefront, in the same exact integer arithmetic as the vector code it replaced, so that
files decode alike everywhere and the bytes of every payload version stay what they were.

Each function works on a wavefront's pixels at flat canvas indices `at`, in their order; every
array it is given keeps one dtype, so that each compiles once (cached beside this file).
"""

__all__ = [
    "ABSENT",
    "BUCKETS",
    "FAR",
    "HASH_BITS",
    "PALETTE",
    "RAW_CONTEXTS",
    "colour_of_rank",
    "commit",
    "escape_inputs",
    "extend",
    "rank_of",
    "raw_predict",
    "slot_stage",
    "weights_rows",
]

import numpy as np
from numba import njit

from nfcompress.coding.primitives import PRECISION

ABSENT = -1  # a canvas cell outside the image
HASH_BITS = 22  # a hash table's key
BUCKETS, FAR = 5, 5  # the slot context's parts: slot buckets of W and N (`model._buckets`), far guess
RAW_CONTEXTS = 8  # contexts of a NEW colour's channels
PALETTE = 512  # colours the palette keeps, at most


@njit(cache=True, nogil=True)
def _normalise(counts: np.ndarray, out: np.ndarray) -> None:
    """model._weights of one row: weights summing to 2^24 - A, the rounding's rest on the first
    largest."""
    a = counts.size
    total = (1 << PRECISION) - a
    s = 0
    for j in range(a):
        s += counts[j]
    given, top = 0, 0
    for j in range(a):
        w = counts[j] * total // s
        out[j] = w
        given += w
        if w > out[top]:
            top = j
    out[top] += total - given


@njit(cache=True, nogil=True)
def weights_rows(counts: np.ndarray) -> np.ndarray:
    """model._weights: integer weights (n, A) from counts (n, A), as float64 for the coder."""
    n, a = counts.shape
    out = np.empty((n, a), np.float64)
    row = np.empty(a, np.int64)
    for i in range(n):
        _normalise(counts[i], row)
        for j in range(a):
            out[i, j] = row[j]
    return out


@njit(cache=True, nogil=True)
def slot_stage(
    cv: np.ndarray,
    sym: np.ndarray,
    tables: np.ndarray,
    at: np.ndarray,
    offsets: np.ndarray,
    period: int,
    by_length: np.ndarray,
    lengths: np.ndarray,
    mix: np.ndarray,
    slots: np.ndarray,
    coarse: np.ndarray,
    blend: int,
    pairs: np.ndarray,
    equalities: np.ndarray,
    far_code: np.ndarray,
    bucket: np.ndarray,
    cw: int,
    x: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each pixel's candidates (n, slots - 1), hash keys (n, tables), slot context, the slots'
    weights (n, slots) and, where its colours `x` are given (encoding), its slot.

    The candidates: W, N, NE, NW, each table's guess, the other CANDIDATES, and (where the
    scheme has it) the pixel `period` canvas cells up (ABSENT where `period` is 0). Hash keys
    fold the candidates in order, table after table by `lengths` (`by_length`: the tables in
    that order), as model._keys does."""
    n, nt, ns = at.size, by_length.size, slots.shape[1]
    nc = ns - 1
    has_period = nc > 12 + nt
    cand = np.empty((n, nc), np.int32)
    keys = np.empty((n, nt), np.int64)
    ctx = np.empty(n, np.int64)
    weights = np.empty((n, ns), np.float64)
    slot = np.full(n, nc, np.int64)
    near = np.empty(12, np.int32)
    counts = np.empty(ns, np.int64)
    co = np.empty(ns, np.int64)
    allowed = np.empty(ns, np.int64)
    row = np.empty(ns, np.int64)
    shift = np.uint64(64 - HASH_BITS)
    for i in range(n):
        a = at[i]
        for k in range(12):
            near[k] = cv[a + offsets[k]]
        h = np.uint64(0)
        done = 0
        for s in range(nt):
            for c in range(done, lengths[s]):
                h = (h ^ np.uint64(np.int64(near[c]))) * mix[c]
            done = lengths[s]
            t = by_length[s]
            keys[i, t] = np.int64(h >> shift) + (t << HASH_BITS)
        for k in range(4):
            cand[i, k] = near[k]
        for t in range(nt):
            cand[i, 4 + t] = tables[keys[i, t]] - 1
        for k in range(4, 12):
            cand[i, nt + k] = near[k]
        if has_period:
            cand[i, nc - 1] = cv[a + period] if period != 0 else ABSENT
        bits = 0
        for k in range(pairs.shape[1]):
            if cand[i, pairs[0, k]] == cand[i, pairs[1, k]]:
                bits |= 1 << k
        if cand[i, 4] == ABSENT:
            bits |= 1 << pairs.shape[1]
        if cand[i, 6] == ABSENT:
            bits |= 1 << (pairs.shape[1] + 1)
        sw, sn = bucket[sym[a - 1]], bucket[sym[a - cw]]
        c = (equalities[bits] * BUCKETS + sw) * BUCKETS * FAR + sn * FAR + far_code[bits]
        ctx[i] = c
        cs = 0
        for j in range(ns):
            allowed[j] = 1 if j == nc or cand[i, j] != ABSENT else 0
            co[j] = coarse[c // FAR, j] * allowed[j]
            cs += co[j]
            counts[j] = slots[c, j] * allowed[j]
        for j in range(ns):
            if blend == 0:
                counts[j] = 4 * counts[j] + co[j]
            else:
                counts[j] = (counts[j] << 12) + blend * ((co[j] << 12) // cs) + allowed[j]
        _normalise(counts, row)
        for j in range(ns):
            weights[i, j] = row[j]
        if x.size:
            for j in range(nc):
                if cand[i, j] == x[i] and cand[i, j] != ABSENT:
                    slot[i] = j
                    break
    return cand, keys, ctx, weights, slot


@njit(cache=True, nogil=True)
def commit(
    cv: np.ndarray,
    tables: np.ndarray,
    slots: np.ndarray,
    coarse: np.ndarray,
    at: np.ndarray,
    cand: np.ndarray,
    keys: np.ndarray,
    ctx: np.ndarray,
    slot: np.ndarray,
    x: np.ndarray,
    step: int,
) -> None:
    """Write a coded wavefront: each pixel's colour (its slot's candidate, or `x` where it
    escaped) into `x` and the canvas, its slot into the counts and its colour into every table
    under its key (of two pixels with one key, the later wins)."""
    escape = slots.shape[1] - 1
    for i in range(at.size):
        s = slot[i]
        if s != escape:
            x[i] = cand[i, s]
        cv[at[i]] = x[i]
        slots[ctx[i], s] += step
        coarse[ctx[i] // FAR, s] += step
        for t in range(keys.shape[1]):
            tables[keys[i, t]] = x[i] + 1


@njit(cache=True, nogil=True)
def escape_inputs(
    cv: np.ndarray,
    sym: np.ndarray,
    lookup: np.ndarray,
    at: np.ndarray,
    cand: np.ndarray,
    x: np.ndarray,
    offsets: np.ndarray,
    cw: int,
    channels: int,
    new: int,
    p: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What escaped pixels at `at` code from: each channel's W, N and NW (n, C, 3; 0 outside the
    image), their median predictions (n, C), the candidates' palette indices (n, candidates; -1
    where none), where `x` is given (encoding) each colour's palette index (`p` where it is not
    there), and the NEW flag's context: which of W, N, NE and NW were NEW (`sym` == `new`)."""
    n, nc = at.size, cand.shape[1]
    near = np.empty((n, channels, 3), np.int64)
    pred = np.empty((n, channels), np.int64)
    taken = np.empty((n, nc), np.int64)
    index = np.full(n, p, np.int64)
    ctx = np.zeros(n, np.int64)
    for i in range(n):
        a = at[i]
        for m, off in enumerate((1, cw, cw + 1)):
            c = max(cv[a - off], 0)
            for k in range(channels):
                near[i, k, m] = c if channels == 1 else (c >> (16 - 8 * k)) & 255
        for k in range(channels):
            pred[i, k] = _med(near[i, k, 0], near[i, k, 1], near[i, k, 2])
        for j in range(nc):
            taken[i, j] = lookup[cand[i, j]] - 1
        if x.size:
            q = lookup[x[i]] - 1
            index[i] = q if q >= 0 else p
        for k in range(4):
            if sym[a + offsets[k]] == new:
                ctx[i] |= 1 << k
    return near, pred, taken, index, ctx


@njit(cache=True, nogil=True)
def _med(w: int, n: int, nw: int) -> int:
    """model._med: the median of W, N and W + N - NW."""
    return max(min(w, n), min(max(w, n), w + n - nw))


@njit(cache=True, nogil=True)
def raw_predict(near: np.ndarray, k: int, green: np.ndarray, g_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel k's prediction of NEW colours and its context (model._State._raw): green or grey
    by its median predictor under the bit length of the gradient around it; red and blue by the
    decoded `green` plus the median of their differences from green, under green's error's."""
    n = near.shape[0]
    pred = np.empty(n, np.int64)
    ctx = np.empty(n, np.int64)
    first = near.shape[1] == 1 or k == 1
    for i in range(n):
        w, nn, nw = near[i, k, 0], near[i, k, 1], near[i, k, 2]
        if first:
            v = _med(w, nn, nw)
            e = abs(w - nw) + abs(nn - nw)
        else:
            v = green[i] + _med(w - near[i, 1, 0], nn - near[i, 1, 1], nw - near[i, 1, 2])
            e = abs(g_err[i])
        pred[i] = min(max(v, 0), 255)
        b = 0
        while e and b < RAW_CONTEXTS - 1:
            e >>= 1
            b += 1
        ctx[i] = b
    return pred, ctx


@njit(cache=True, nogil=True)
def extend(lookup: np.ndarray, palette: np.ndarray, p: int, colours: np.ndarray) -> int:
    """Add the colours not yet in the palette (its first `p` entries), in order, while it has
    room; its new size."""
    for c in colours:
        if p == palette.size:
            break
        if lookup[c] == 0:
            palette[p] = c
            p += 1
            lookup[c] = p
    return p


@njit(cache=True, nogil=True)
def _distances(palette: np.ndarray, pred: np.ndarray, taken: np.ndarray, keys: np.ndarray) -> None:
    """model._State._rank_keys for one pixel: each palette colour's distance from the predicted
    channels `pred`, times 2 PALETTE, plus its index; `taken` (palette indices of the candidates,
    -1 where none) last."""
    p = keys.size
    last = np.int64(1) << 40
    for q in range(p):
        c = palette[q]
        if pred.size == 1:
            d = abs(c - pred[0])
        else:
            d = abs(((c >> 16) & 255) - pred[0]) + abs(((c >> 8) & 255) - pred[1]) + abs((c & 255) - pred[2])
        keys[q] = d * (2 * PALETTE) + q
    for k in range(taken.size):
        if taken[k] >= 0 and keys[taken[k]] < last:  # once, where two candidates are one colour
            keys[taken[k]] += last


@njit(cache=True, nogil=True)
def rank_of(palette: np.ndarray, pred: np.ndarray, taken: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The rank of each pixel's palette colour (`index`) among the palette's sort keys
    (`_distances`): pixel i's predicted channels pred[i], its candidates' palette indices
    taken[i]."""
    n, p = index.size, palette.size
    out = np.empty(n, np.int64)
    keys = np.empty(p, np.int64)
    for i in range(n):
        _distances(palette, pred[i], taken[i], keys)
        own, r = keys[index[i]], 0
        for q in range(p):
            if keys[q] < own:
                r += 1
        out[i] = r
    return out


@njit(cache=True, nogil=True)
def colour_of_rank(palette: np.ndarray, pred: np.ndarray, taken: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The inverse of `rank_of`: the palette colour of each pixel's rank."""
    n, p = rank.size, palette.size
    out = np.empty(n, np.int64)
    keys = np.empty(p, np.int64)
    for i in range(n):
        _distances(palette, pred[i], taken[i], keys)
        out[i] = palette[np.partition(keys, rank[i])[rank[i]] % (2 * PALETTE)]
    return out
