"""The adaptive model's sub-pixels in and out of its ANS stream, compiled (numba): each value under
the mixture `causal.model.mixture_rows` gives, built from the components' parameters
(`causal.model.mixture_parts`) with the same integers, through `coding.rans`. A test checks the
weights against `mixture_rows` and the stream against constriction's."""

__all__ = ["table", "decode", "record"]

import functools

import numpy as np

from nfcompress.coders.linear.symbols import ROW, add_logistic
from nfcompress.coding.primitives import FRAC_BITS, MEAN_STEPS, every_scale
from nfcompress.coding.rans import code
from nfcompress.compiled import compiled

_MIX_BITS = 12  # causal.model.MIX_BITS
_FRAC = FRAC_BITS - 4  # the bits of a prediction below its 1/MEAN_STEPS step


@functools.cache
def table() -> np.ndarray:
    """`every_scale()`'s cumulative table as int64, the form the compiled loops read."""
    return every_scale().cum.astype(np.int64)


@compiled
def _weights(cum: np.ndarray, p: np.ndarray, q: np.ndarray, mix: np.ndarray, w: np.ndarray) -> None:
    """One sub-pixel's 256 weights: components of predictions p, scale codes q and mixture
    weights mix (each K, integers), each the `logistic` of `every_scale()`'s cumulative table
    `cum` as int64 (`table`)."""
    for v in range(256):
        w[v] = 0
    for c in range(p.size):
        r = q[c] * MEAN_STEPS + ((p[c] >> _FRAC) & (MEAN_STEPS - 1))
        add_logistic(cum, r, 255 - (p[c] >> FRAC_BITS), mix[c], w)
    total = np.int64(0)
    for v in range(256):
        w[v] >>= _MIX_BITS
        total += w[v]
    top = 0
    for v in range(1, 256):
        if w[v] > w[top]:
            top = v
    w[top] += ROW - total


@compiled
def record(cum: np.ndarray, p: np.ndarray, q: np.ndarray, mix: np.ndarray, x: np.ndarray, io: tuple) -> np.ndarray:
    """Record values x[k] in an encoding `io`, each under the mixture of row k of p, q and mix
    (n, K); each symbol's frequency (its weight plus 1)."""
    n = x.size
    freq = np.empty(n, np.int64)
    w = np.empty(256, np.int64)
    edge = np.empty(2, np.int64)
    for k in range(n):
        _weights(cum, p[k], q[k], mix[k], w)
        s = x[k]
        start = np.int64(s)
        for v in range(s):
            start += w[v]
        edge[0], edge[1] = start, start + w[s] + 1
        code(io, edge, 1, 0)
        freq[k] = w[s] + 1
    return freq


@compiled
def decode(cum: np.ndarray, p: np.ndarray, q: np.ndarray, mix: np.ndarray, io: tuple) -> np.ndarray:
    """The values `record` recorded, from a decoding `io`, under the same mixtures."""
    n = p.shape[0]
    out = np.empty(n, np.int64)
    w = np.empty(256, np.int64)
    table = np.zeros(257, np.int64)
    for k in range(n):
        _weights(cum, p[k], q[k], mix[k], w)
        for v in range(256):
            table[v + 1] = table[v] + w[v] + 1
        out[k] = code(io, table, 256, 0)
    return out
