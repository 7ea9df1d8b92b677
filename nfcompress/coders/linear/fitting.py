"""The linear encoder's fitting loops, compiled (numba): every pixel's features and first-stage
prediction, the sums of the least-squares systems of each weight set, the tallies of residuals
by context, and the search for each context's scale code (the first of some candidate codes
under which its residuals cost the fewest bits). Only the encoder fits, so these need not be
portable; tests hold them to the numpy forms they replaced."""

__all__ = ["features", "normal_sums", "predictions", "tally", "cheapest", "cheapest_spiked"]

import numpy as np

from nfcompress.compiled import compiled


@compiled
def features(
    cv: np.ndarray,
    pads: np.ndarray,
    cells: np.ndarray,
    pad_cells: np.ndarray,
    offsets: np.ndarray,
    cross: np.ndarray,
    lp: np.ndarray,
    later: bool,
    finish: bool,
) -> np.ndarray:
    """`_Layout.features` (F, n) int32 of the pixels at canvas cells `cells` and padded cells `pad_cells`:
    cv[cells - offsets], pads[pad_cells + cross], 1, and where `finish` the local predictions lp
    (where any) and the median of the W, N and NW features (less the earlier channels' where
    `later`, then plus the first's)."""
    n, nc, nx = cells.size, offsets.size, cross.size
    rows = nc + nx + 1 + (finish and lp.size > 0) + finish
    x = np.empty((rows, n), np.int32)
    for r in range(nc):  # row by row: each written in order (2.5x faster than pixel by pixel)
        for p in range(n):
            x[r, p] = cv[cells[p] - offsets[r]]
    for r in range(nx):
        for p in range(n):
            x[nc + r, p] = pads[pad_cells[p] + cross[r]]
    x[nc + nx] = 1
    if finish and lp.size:
        x[rows - 2] = lp
    for p in range(n if finish else 0):
        west, north, corner = x[0, p], x[1, p], x[2, p]
        if later:
            west, north, corner = west - x[nc + 1, p], north - x[nc + 2, p], corner - x[nc + 3, p]
        med = min(max(np.int64(west) + north - corner, min(west, north)), max(west, north))
        x[rows - 1, p] = med + x[nc, p] if later else med
    return x


@compiled
def normal_sums(
    x: np.ndarray, y: np.ndarray, sets: np.ndarray, om: np.ndarray, a: np.ndarray, v: np.ndarray, count: np.ndarray
) -> None:
    """Add to each weight set k's least-squares system (a[k] (F, F), v[k] (F,)) and pixel count the
    pixels of features x (F, n) and values y (n,) whose set is sets[n], pixel p counting om[p]."""
    f = x.shape[0]
    row = np.empty(f)
    for p in range(x.shape[1]):
        k = sets[p]
        for g in range(f):
            row[g] = x[g, p]
        ak, vk, weight = a[k], v[k], om[p]
        for g in range(f):
            weighed = row[g] * weight
            vk[g] += weighed * y[p]
            akg = ak[g]
            # The whole row, not its upper half: a loop of fixed length the compiler vectorises
            # (1.8x faster); the upper half's sums are the same, and the lower half is theirs.
            for h in range(f):
                akg[h] += weighed * row[h]
        count[k] += 1
    for k in range(a.shape[0]):
        for g in range(f):
            for h in range(g):
                a[k, g, h] = a[k, h, g]


@compiled
def predictions(x: np.ndarray, weights: np.ndarray, sets: np.ndarray, high: int) -> np.ndarray:
    """Each pixel's integer prediction (n,): its features x (F, n) times the weights (sets, F) of
    its set, within 0..high."""
    out = np.zeros(x.shape[1], np.int64)
    for g in range(x.shape[0]):
        for p in range(x.shape[1]):
            out[p] += np.int64(x[g, p]) * weights[sets[p], g]
    for p in range(x.shape[1]):
        out[p] = min(max(out[p], 0), high)
    return out


@compiled
def tally(major: np.ndarray, minor: np.ndarray, minors: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys major * minors + minor (ascending) and how often each occurs, as
    np.unique(..., return_counts=True) gives them, for majors and minors (0 <= minor < minors)
    of few values: sorted by counting, minor then major (3x faster than sorting the keys)."""
    n = major.size
    by_minor = _counting_order(minor, np.arange(n), minors)
    order = _counting_order(major, by_minor, major.max() + 1 if n else 0)
    keys, counts = np.empty(n, np.int64), np.zeros(n, np.int64)
    u, last = -1, -1
    for t in range(n):
        key = major[order[t]] * minors + minor[order[t]]
        if key != last:
            u, last = u + 1, key
            keys[u] = key
        counts[u] += 1
    return keys[: u + 1], counts[: u + 1]


@compiled
def _counting_order(by: np.ndarray, order: np.ndarray, values: int) -> np.ndarray:
    """The indices `order` stably sorted by by[index] (0 <= by < values)."""
    start = np.zeros(values + 1, np.int64)
    for p in range(by.size):
        start[by[p] + 1] += 1
    for m in range(values):
        start[m + 1] += start[m]
    out = np.empty(order.size, np.int64)
    for p in order:
        out[start[by[p]]] = p
        start[by[p]] += 1
    return out


@compiled
def cheapest(
    bits: np.ndarray, ctx: np.ndarray, at: np.ndarray, n: np.ndarray, out: np.ndarray, near: bool, tried: np.ndarray
) -> None:
    """For each run of equal contexts ctx (ascending), into out[ctx]: the first code of `tried`
    (plus out[ctx] where `near`) within 0..255 under which its residuals cost the fewest bits,
    residual k costing bits[code, at[k]] n[k] times."""
    _search(bits, ctx, at, n, np.empty(0), np.empty(0), out, near, tried, False)


@compiled
def cheapest_spiked(
    masses: np.ndarray,
    ctx: np.ndarray,
    at: np.ndarray,
    n: np.ndarray,
    share: np.ndarray,
    hit: np.ndarray,
    codes: np.ndarray,
    tried: np.ndarray,
) -> None:
    """`cheapest` near codes[ctx], into codes, of residuals under a spike: residual k, n[k] of them,
    costs -log2((1 - share[k]) masses[code, at[k]] + share[k] hit[k]) bits (its mass at least 1e-12)."""
    _search(masses, ctx, at, n, share, hit, codes, True, tried, True)


@compiled
def _search(
    table: np.ndarray,
    ctx: np.ndarray,
    at: np.ndarray,
    n: np.ndarray,
    share: np.ndarray,
    hit: np.ndarray,
    codes: np.ndarray,
    near: bool,
    tried: np.ndarray,
    spiked: bool,
) -> None:
    """`cheapest` (table: bits) or, where `spiked`, `cheapest_spiked` (table: masses)."""
    k0 = 0
    while k0 < ctx.size:
        k1 = k0
        while k1 < ctx.size and ctx[k1] == ctx[k0]:
            k1 += 1
        base = codes[ctx[k0]] if near else 0
        best, least = base, np.inf
        for t in tried:
            code = base + t
            if 0 <= code <= 255:
                cost = 0.0
                for k in range(k0, k1):
                    if spiked:
                        cost += -np.log2(max((1 - share[k]) * table[code, at[k]] + share[k] * hit[k], 1e-12)) * n[k]
                    else:
                        cost += table[code, at[k]] * n[k]
                if cost < least:
                    best, least = code, cost
        codes[ctx[k0]] = best
        k0 = k1
