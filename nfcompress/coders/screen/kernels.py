"""The screen model's loops, compiled (numba): a whole segment of wavefronts coded or decoded in
one call, every pixel in exact integer arithmetic, the symbols through `coding.rans` (constriction's
streams), so that files decode alike everywhere and every payload version's bytes stay what
they were.

The model's state is a tuple of arrays (`State`, held by model._State) and its settings another
(`Settings`, from the scheme and the layout); `segment` codes wavefronts with them. Each array
keeps one dtype, so that every function compiles once (and is cached: `nfcompress.compiled`).
"""

__all__ = [
    "ABSENT",
    "BUCKETS",
    "FAR",
    "GENERATIONS",
    "GENERATION_SHIFT",
    "GROUPED",
    "HASH_BITS",
    "PALETTE",
    "RAW_CONTEXTS",
    "raw_predict",
    "segment",
]

import numpy as np

from nfcompress.coding.primitives import PRECISION
from nfcompress.coding.rans import code, cumulative
from nfcompress.compiled import compiled

ABSENT = -1  # a canvas cell outside the image
HASH_BITS = 22  # a hash table's key
# A table entry: a colour plus 1 (0: none yet) in its low GENERATION_SHIFT bits, and above them the
# generation of the state that wrote it; an entry of another generation reads as none, so that a
# table is used again without clearing it (`model._State`).
GENERATION_SHIFT = 25
GENERATIONS = 63  # the generations an int32 entry tells apart, 1 to 63
BUCKETS, FAR = 5, 5  # the slot context's parts: slot buckets of W and N (`model._buckets`), far guess
RAW_CONTEXTS = 8  # contexts of a NEW colour's channels
PALETTE = 512  # colours the palette keeps, at most
GROUPED = 64  # from this many NEW colours in a wavefront, their residuals are coded by context
# State: cv, sym, tables, slots, coarse, fresh, ranks, raw, palette, lookup, size (the palette's
# size, int64[1]), generation (the tables', int64[1]). Settings: offsets, period, by_length,
# lengths, mix, blend, new_flag, grouped, pairs, equalities, far_code, bucket, cw, step
# (model._State.state and model._State.settings).


@compiled
def _normalise(counts: np.ndarray, out: np.ndarray) -> None:
    """Integer weights from counts (zero where a symbol cannot occur) that sum to 2^PRECISION - A
    (the coder adds 1 to each), the rounding's rest on the first largest."""
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


@compiled
def _table(counts: np.ndarray, cum: np.ndarray) -> None:
    """The coder's cumulative table of the weights of counts, built in place."""
    _normalise(counts, cum[1:])
    cumulative(cum[1:], cum)


@compiled
def _med(w: int, n: int, nw: int) -> int:
    """The median predictor: the median of W, N and W + N - NW."""
    return max(min(w, n), min(max(w, n), w + n - nw))


@compiled
def _indices(flags: np.ndarray, want: bool) -> np.ndarray:
    """The positions where flags[i] == want (np.flatnonzero, which numba compiles slowly)."""
    n = 0
    for f in flags:
        n += f == want
    out = np.empty(n, np.int64)
    n = 0
    for i in range(flags.size):
        if flags[i] == want:
            out[n] = i
            n += 1
    return out


@compiled
def _distances(palette: np.ndarray, pred: np.ndarray, taken: np.ndarray, keys: np.ndarray) -> None:
    """The palette's sort keys for one escaped pixel: each colour's distance from the predicted
    channels `pred`, times 2 PALETTE, plus its index; the candidates' colours (`taken`: their
    palette indices, -1 where none) last, out of the way (an escaped colour is none of them)."""
    last = np.int64(1) << 40
    for q in range(keys.size):
        c = palette[q]
        if pred.size == 1:
            d = abs(c - pred[0])
        else:
            d = abs(((c >> 16) & 255) - pred[0]) + abs(((c >> 8) & 255) - pred[1]) + abs((c & 255) - pred[2])
        keys[q] = d * (2 * PALETTE) + q
    for k in range(taken.size):
        if taken[k] >= 0 and keys[taken[k]] < last:  # once, where two candidates are one colour
            keys[taken[k]] += last


@compiled
def _rank(palette: np.ndarray, pred: np.ndarray, taken: np.ndarray, index: int, keys: np.ndarray) -> int:
    """The rank of palette colour `index` among one pixel's sort keys (`_distances`, into the
    scratch `keys`)."""
    _distances(palette, pred, taken, keys)
    own, r = keys[index], 0
    for q in range(keys.size):
        if keys[q] < own:
            r += 1
    return r


@compiled
def _colour(palette: np.ndarray, pred: np.ndarray, taken: np.ndarray, rank: int, keys: np.ndarray) -> int:
    """The inverse of `_rank`: the palette colour of one pixel's rank."""
    _distances(palette, pred, taken, keys)
    return palette[_select(keys, rank) % (2 * PALETTE)]


@compiled
def _select(keys: np.ndarray, r: int) -> int:
    """The r-th smallest of distinct keys (reordering them): the r + 1 smallest in turn where r is
    small, as most ranks are, else by Hoare's selection."""
    if r < 8:
        key = np.int64(-1)
        for _ in range(r + 1):
            low = np.iinfo(np.int64).max
            for q in range(keys.size):
                if key < keys[q] < low:
                    low = keys[q]
            key = low
        return key
    lo, hi = 0, keys.size - 1
    while lo < hi:
        pivot = keys[(lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while keys[i] < pivot:
                i += 1
            while keys[j] > pivot:
                j -= 1
            if i <= j:
                keys[i], keys[j] = keys[j], keys[i]
                i += 1
                j -= 1
        if r <= j:
            hi = j
        elif r >= i:
            lo = i
        else:
            break
    return keys[r]


@compiled
def raw_predict(
    near: np.ndarray, rows: np.ndarray, k: int, green: np.ndarray, g_err: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Channel k's prediction of the NEW colours of pixels `rows` and its context: green or grey
    by its median predictor under the bit length of the gradient around it (`near`: each
    channel's W, N and NW, n x C x 3); red and blue by the decoded `green` plus the median of
    their differences from green, under the bit length of green's error `g_err`; lengths capped
    at RAW_CONTEXTS - 1."""
    n = rows.size
    pred = np.empty(n, np.int64)
    ctx = np.empty(n, np.int64)
    first = near.shape[1] == 1 or k == 1
    for i in range(n):
        u = rows[i]
        w, nn, nw = near[u, k, 0], near[u, k, 1], near[u, k, 2]
        if first:
            v = _med(w, nn, nw)
            e = abs(w - nw) + abs(nn - nw)
        else:
            v = green[i] + _med(w - near[u, 1, 0], nn - near[u, 1, 1], nw - near[u, 1, 2])
            e = abs(g_err[i])
        pred[i] = min(max(v, 0), 255)
        b = 0
        while e and b < RAW_CONTEXTS - 1:
            e >>= 1
            b += 1
        ctx[i] = b
    return pred, ctx


@compiled
def segment(state: tuple, settings: tuple, at: np.ndarray, bounds: np.ndarray, x: np.ndarray, io: tuple) -> None:
    """Code (`io` encoding: `x` the colours of every canvas cell) or decode the wavefronts whose
    pixels are at[bounds[t]:bounds[t + 1]], one after another, into the state's canvas."""
    for t in range(bounds.size - 1):
        _front(state, settings, at[bounds[t] : bounds[t + 1]], x, io)


@compiled
def _front(state: tuple, settings: tuple, at: np.ndarray, xs: np.ndarray, io: tuple) -> None:
    """One wavefront: every pixel's slot, then the escaped pixels' colours (`_escapes`), then
    the counts, canvas and tables learn them."""
    cv, sym, tables, slots, coarse = state[0], state[1], state[2], state[3], state[4]
    generation = state[11][0]
    mask = (1 << GENERATION_SHIFT) - 1
    offsets, period, by_length, lengths, mix, blend = settings[:6]
    pairs, equalities, far_code, bucket, cw, step = settings[8:]
    encoding = xs.size > 0
    n, nt, ns = at.size, by_length.size, slots.shape[1]
    nc = ns - 1  # the candidates; slot nc escapes
    has_period = nc > 12 + nt  # the pixel a period of rows up is the last candidate
    cand = np.empty((n, nc), np.int32)
    keys = np.empty((n, nt), np.int64)
    ctx = np.empty(n, np.int64)
    slot = np.empty(n, np.int64)
    x = np.empty(n, np.int64)
    near = np.empty(12, np.int32)
    counts = np.empty(ns, np.int64)
    co = np.empty(ns, np.int64)
    allowed = np.empty(ns, np.int64)
    cum = np.empty(ns + 1, np.int64)
    shift = np.uint64(64 - HASH_BITS)
    escaped = np.zeros(n, np.bool_)
    for i in range(n):
        a = at[i]
        for k in range(12):
            near[k] = cv[a + offsets[k]]
        # Each table's key: a hash of its prefix of the candidates, the shorter sets' first.
        h = np.uint64(0)
        done = 0
        for s in range(nt):
            for c in range(done, lengths[s]):
                h = (h ^ np.uint64(np.int64(near[c]))) * mix[c]
            done = lengths[s]
            keys[i, by_length[s]] = np.int64(h >> shift) + (by_length[s] << HASH_BITS)
        for k in range(4):
            cand[i, k] = near[k]
        for s in range(nt):
            entry = tables[keys[i, s]]
            cand[i, 4 + s] = (entry & mask if entry >> GENERATION_SHIFT == generation else 0) - 1
        for k in range(4, 12):
            cand[i, nt + k] = near[k]
        if has_period:
            cand[i, nc - 1] = cv[a + period] if period != 0 else ABSENT
        # The context: which candidate pairs are equal, whether guesses 0 and 2 are absent, and
        # the slot buckets of W's and N's symbols.
        bits = 0
        for k in range(pairs.shape[1]):
            if cand[i, pairs[0, k]] == cand[i, pairs[1, k]]:
                bits |= 1 << k
        if cand[i, 4] == ABSENT:
            bits |= 1 << pairs.shape[1]
        if cand[i, 6] == ABSENT:
            bits |= 1 << (pairs.shape[1] + 1)
        c = (equalities[bits] * BUCKETS + bucket[sym[a - 1]]) * BUCKETS * FAR + bucket[sym[a - cw]] * FAR
        c += far_code[bits]
        ctx[i] = c
        # The weights: the context's counts, the coarse counts as a prior of weight `blend`
        # (normalised to 12 bits), or (blend 0) 4 times the counts plus the coarse ones.
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
        _table(counts, cum)
        s = nc
        if encoding:
            x[i] = xs[a]
            for j in range(nc):
                if cand[i, j] == x[i] and cand[i, j] != ABSENT:
                    s = j
                    break
        s = code(io, cum, ns, s)
        slot[i] = s
        sym[a] = s  # (contexts read W's and N's, on earlier wavefronts)
        escaped[i] = s == nc
        if not encoding and s != nc:
            x[i] = cand[i, s]
    rows = _indices(escaped, True)
    if rows.size:
        _escapes(state, settings, at, cand, x, rows, encoding, io)
    for i in range(n):
        cv[at[i]] = x[i]
        slots[ctx[i], slot[i]] += step
        coarse[ctx[i] // FAR, slot[i]] += step
        for s in range(nt):
            tables[keys[i, s]] = (x[i] + 1) | (generation << GENERATION_SHIFT)


@compiled
def _escapes(
    state: tuple,
    settings: tuple,
    at: np.ndarray,
    cand: np.ndarray,
    x: np.ndarray,
    rows: np.ndarray,
    encoding: bool,
    io: tuple,
) -> None:
    """The colours x[rows] of a wavefront's escaped pixels (at `at[rows]`, of candidates
    `cand[rows]`): a palette colour by its rank in the palette sorted by distance from the median
    prediction (`_distances`), or NEW and its channels (`_new_colours`); NEW is flagged first
    under counts of which of the pixel's W, N, NE and NW were NEW, or (without the scheme's
    flag) the last rank."""
    cv, sym, fresh, ranks, raw = state[0], state[1], state[5], state[6], state[7]
    palette, lookup, size = state[8], state[9], state[10]
    offsets, new_flag, grouped, cw, step = settings[0], settings[6], settings[7], settings[12], settings[13]
    m, nc, channels = rows.size, cand.shape[1], raw.shape[0]
    new_sym = nc + 2  # `sym` of a NEW colour (nc + 1: of a cell outside)
    p = size[0]
    near = np.empty((m, channels, 3), np.int64)
    pred = np.empty((m, channels), np.int64)
    taken = np.empty((m, nc), np.int64)
    index = np.empty(m, np.int64)
    for e in range(m):
        a = at[rows[e]]
        for v in range(3):
            c = max(cv[a - (1 if v == 0 else cw if v == 1 else cw + 1)], 0)  # W, N, NW
            for k in range(channels):
                near[e, k, v] = c if channels == 1 else (c >> (16 - 8 * k)) & 255
        for k in range(channels):
            pred[e, k] = _med(near[e, k, 0], near[e, k, 1], near[e, k, 2])
        for j in range(nc):
            taken[e, j] = lookup[cand[rows[e], j]] - 1
        index[e] = p
        if encoding and lookup[x[rows[e]]] > 0:
            index[e] = lookup[x[rows[e]]] - 1
    new = np.ones(m, np.bool_)
    if p and new_flag:
        ctx = np.zeros(m, np.int64)
        flag = np.zeros(m, np.int64)
        cum = np.empty(3, np.int64)
        for e in range(m):
            for k in range(4):
                if sym[at[rows[e]] + offsets[k]] == new_sym:
                    ctx[e] |= 1 << k
            _table(fresh[ctx[e]], cum)
            flag[e] = code(io, cum, 2, 1 if index[e] == p else 0)
            new[e] = flag[e] == 1
        for e in range(m):
            fresh[ctx[e], flag[e]] += step
    if p:
        _ranks(ranks, palette[:p], pred, taken, index, x, rows, new, encoding, not new_flag, step, io)
    fresh_rows = _indices(new, True)
    if fresh_rows.size:
        for e in fresh_rows:
            sym[at[rows[e]]] = new_sym
        _new_colours(raw, near, fresh_rows, x, rows, encoding, grouped, step, io)
        for e in fresh_rows:
            c = x[rows[e]]
            if size[0] < PALETTE and lookup[c] == 0:
                palette[size[0]] = c
                size[0] += 1
                lookup[c] = size[0]


@compiled
def _ranks(
    ranks: np.ndarray,
    palette: np.ndarray,
    pred: np.ndarray,
    taken: np.ndarray,
    index: np.ndarray,
    x: np.ndarray,
    rows: np.ndarray,
    new: np.ndarray,
    encoding: bool,
    new_last: bool,
    step: int,
    io: tuple,
) -> None:
    """The palette ranks of escaped pixels that are not NEW (`new`), or (`new_last`: no NEW
    flag) of all of them, NEW as the last rank, setting `new`; each under one distribution.
    Decoded colours go to x[rows]."""
    p = palette.size
    coded = np.arange(new.size) if new_last else _indices(new, False)
    n = coded.size
    if not n:
        return
    a = p + 1 if new_last else p
    counts = np.empty(a, np.int64)
    for q in range(p):
        counts[q] = ranks[q]
    if new_last:
        counts[p] = ranks[PALETTE]
    rank = np.empty(n, np.int64)
    keys = np.empty(p, np.int64)
    if encoding:
        for k in range(n):
            i = coded[k]
            rank[k] = p if index[i] >= p else _rank(palette, pred[i], taken[i], index[i], keys)
    if a > 1:  # (a palette of one colour and no NEW among the ranks: nothing to code)
        cum = np.empty(a + 1, np.int64)
        _table(counts, cum)
        for k in range(n):
            rank[k] = code(io, cum, a, rank[k] if encoding else 0)
    else:
        for k in range(n):
            rank[k] = 0
    for k in range(n):
        ranks[rank[k] if rank[k] < p else PALETTE] += step
        new[coded[k]] = rank[k] == p
        if not encoding and rank[k] < p:
            x[rows[coded[k]]] = _colour(palette, pred[coded[k]], taken[coded[k]], rank[k], keys)


@compiled
def _new_colours(
    raw: np.ndarray,
    near: np.ndarray,
    fresh: np.ndarray,
    x: np.ndarray,
    rows: np.ndarray,
    encoding: bool,
    grouped: bool,
    step: int,
    io: tuple,
) -> None:
    """The NEW colours x[rows[fresh]], channel by channel (green first): each channel's residual
    from its prediction (`raw_predict`) modulo 256 under its context's counts; row by row or
    (`grouped`, from GROUPED rows) context after context, each context's rows in order."""
    m, channels = fresh.size, raw.shape[0]
    got = np.zeros((channels, m), np.int64)
    g_err = np.zeros(m, np.int64)
    cum = np.empty((RAW_CONTEXTS, 257), np.int64)
    order = np.arange(m)
    r = np.empty(m, np.int64)
    for j in range(channels):
        k = j if channels == 1 else (1 - j if j < 2 else 2)  # green, red, blue
        shift = 16 - 8 * k if channels == 3 else 0
        pred, ctx = raw_predict(near, fresh, k, got[1 % channels], g_err)
        for c in range(RAW_CONTEXTS):
            _table(raw[k, c], cum[c])
        if grouped and m >= GROUPED:  # context after context, each context's rows in order
            seen = np.zeros(RAW_CONTEXTS + 1, np.int64)
            for e in range(m):
                seen[ctx[e] + 1] += 1
            for c in range(RAW_CONTEXTS):
                seen[c + 1] += seen[c]
            for e in range(m):
                order[seen[ctx[e]]] = e
                seen[ctx[e]] += 1
        for e in order:
            want = ((x[rows[fresh[e]]] >> shift) - pred[e]) & 255 if encoding else 0
            r[e] = code(io, cum[ctx[e]], 256, want)
        for e in range(m):
            raw[k, ctx[e], r[e]] += step
            got[k, e] = (pred[e] + r[e]) & 255
            if k == 1 or channels == 1:
                g_err[e] = ((r[e] + 128) & 255) - 128
    if not encoding:
        for e in range(m):
            x[rows[fresh[e]]] = got[0, e] if channels == 1 else (got[0, e] << 16) | (got[1, e] << 8) | got[2, e]
