"""The causal and adaptive models' sub-pixels in and out of their ANS streams, compiled (numba):
each value under the mixture `model.mixture_rows` gives, built from the components' parameters
(`model.mixture_parts`) with the same integers, through `coding.rans`. Tests check the
parameters, the weights against `mixture_rows` and the stream against constriction's."""

__all__ = [
    "ACT_BITS",
    "OUT_BITS",
    "MIX_BITS",
    "SUBSTEP_BITS",
    "LOG_SCALE_MIN",
    "LOG_SCALE_STEPS",
    "MEAN_SCALE",
    "table",
    "parts",
    "decode",
    "record",
]

import functools

import numpy as np

from nfcompress.coders.linear.symbols import ROW
from nfcompress.coding.primitives import FLOOR, FRAC_BITS, MEAN_STEPS, every_scale, exp_one
from nfcompress.coding.rans import code
from nfcompress.compiled import compiled

ACT_BITS = 8  # the network's hidden activations count in 2**-ACT_BITS
OUT_BITS = 20  # the network's outputs count in 2**-OUT_BITS
MIX_BITS = 12  # mixture weights are integers summing to 2**MIX_BITS
LOG_SCALE_MIN, LOG_SCALE_STEPS = -4.0, 16  # a component's scale code q: its log scale is -4 + q / 16
MEAN_SCALE = 16  # a component's mean is the median prediction plus 16 times its output
SUBSTEP_BITS = FRAC_BITS - 4  # the bits of a prediction below its 1/MEAN_STEPS step
_TOP = ROW - 255 * FLOOR  # LogisticTables.total: a component's last weight is _TOP - cum
_LANES = 32  # values a run of `_weights` sums at once


@functools.cache
def table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`every_scale()`'s cumulative table as int64, the form the compiled loops read, with each
    row's reach: the first and the last column t where cum[r, t + 1] differs from cum[r, t]."""
    cum = every_scale().cum.astype(np.int64)
    rises = np.diff(cum, axis=1) != 0
    first = np.where(rises.any(1), rises.argmax(1), cum.shape[1])
    last = np.where(rises.any(1), rises.shape[1] - 1 - rises[:, ::-1].argmax(1), -1)
    return cum, first, last


_MEAN = MEAN_SCALE * 2.0 ** (FRAC_BITS - OUT_BITS)
_LOW = LOG_SCALE_MIN * 2.0**OUT_BITS
_HALF = 2.0 ** (OUT_BITS - 1) / LOG_SCALE_STEPS
_STEP = 2.0**OUT_BITS / LOG_SCALE_STEPS


@compiled
def parts(o: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`model.mixture_parts`, a sub-pixel at a time with its operations in its order:
    the components' predictions, scale codes and weights (n, K) from outputs o (n, 3 K)."""
    n, k = o.shape[0], o.shape[1] // 3
    p, q, mix = np.empty((n, k), np.int64), np.empty((n, k), np.int64), np.empty((n, k), np.int64)
    e = np.empty(k)
    for a in range(n):
        top = o[a, 2 * k] / 2.0**OUT_BITS
        for c in range(1, k):
            top = max(top, o[a, 2 * k + c] / 2.0**OUT_BITS)
        for c in range(k):
            p[a, c] = min(max(centre[a] + np.floor(o[a, c] * _MEAN), 0), (256 << FRAC_BITS) - 1)
            q[a, c] = min(max(np.floor((o[a, k + c] - _LOW + _HALF) / _STEP), 0), 255)
            e[c] = exp_one(o[a, 2 * k + c] / 2.0**OUT_BITS - top)
        total = e[0]
        for c in range(1, k):
            total += e[c]
        best, left = 0, 1 << MIX_BITS
        for c in range(k):
            mix[a, c] = np.floor(e[c] / total * 2.0**MIX_BITS)
            left -= mix[a, c]
            if mix[a, c] > mix[a, best]:
                best = c
        mix[a, best] += left
    return p, q, mix


@compiled
def _weights(tab: tuple, p: np.ndarray, q: np.ndarray, mix: np.ndarray, k: int, w: np.ndarray) -> None:
    """Sub-pixel k's 256 weights: components of predictions p[k], scale codes q[k] and mixture
    weights mix[k] (each K integers), each the `logistic` of `every_scale()`'s cumulative table
    (`table`: cum as int64, and each row's reach)."""
    cum, first, last = tab
    # Values 1..254 beyond every component's reach get FLOOR alone: the components' sums are
    # taken from lo to hi only, in whole runs of _LANES (a loop the compiler vectorises).
    lo, hi, floors = 255, 0, 0
    for c in range(p.shape[1]):
        r = q[k, c] * MEAN_STEPS + ((p[k, c] >> SUBSTEP_BITS) & (MEAN_STEPS - 1))
        base = 255 - (p[k, c] >> FRAC_BITS)
        lo, hi = min(lo, first[r] - base), max(hi, last[r] - base)
        floors += mix[k, c] * FLOOR
    runs = max(0, -(-(min(hi, 254) - max(lo, 1) + 1) // _LANES))
    start = max(1, min(lo, 255 - runs * _LANES))
    for v in range(255):
        w[v] = floors
    w[255] = 0  # the last value has no FLOOR of its own (`add_logistic`)
    for c in range(p.shape[1]):
        r = q[k, c] * MEAN_STEPS + ((p[k, c] >> SUBSTEP_BITS) & (MEAN_STEPS - 1))
        line, m = cum[r, 255 - (p[k, c] >> FRAC_BITS) :], mix[k, c]
        w[0] += m * line[1]
        if runs * _LANES > 254:
            for v in range(1, 255):
                w[v] += m * (line[v + 1] - line[v])
        else:
            for b in range(runs):
                for u in range(_LANES):
                    v = start + b * _LANES + u
                    w[v] += m * (line[v + 1] - line[v])
        w[255] += m * (_TOP - line[255])
    total, most = np.int64(0), np.int64(0)
    for v in range(256):
        w[v] >>= MIX_BITS
        total += w[v]
        most = max(most, w[v])
    top = 0
    while w[top] != most:  # the first of the largest
        top += 1
    w[top] += ROW - total


@compiled
def record(tab: tuple, p: np.ndarray, q: np.ndarray, mix: np.ndarray, x: np.ndarray, io: tuple) -> np.ndarray:
    """Record values x[k] in an encoding `io`, each under the mixture of row k of p, q and mix
    (n, K); each symbol's frequency (its weight plus 1)."""
    n = x.size
    freq = np.empty(n, np.int64)
    w = np.empty(256, np.int64)
    edge = np.empty(2, np.int64)
    for k in range(n):
        _weights(tab, p, q, mix, k, w)
        s = x[k]
        start = np.int64(s)
        for v in range(s):
            start += w[v]
        edge[0], edge[1] = start, start + w[s] + 1
        code(io, edge, 1, 0)
        freq[k] = w[s] + 1
    return freq


@compiled
def decode(tab: tuple, p: np.ndarray, q: np.ndarray, mix: np.ndarray, io: tuple) -> np.ndarray:
    """The values `record` recorded, from a decoding `io`, under the same mixtures."""
    n = p.shape[0]
    out = np.empty(n, np.int64)
    w = np.empty(256, np.int64)
    table = np.zeros(257, np.int64)
    for k in range(n):
        _weights(tab, p, q, mix, k, w)
        for v in range(256):
            table[v + 1] = table[v] + w[v] + 1
        out[k] = code(io, table, 256, 0)
    return out
