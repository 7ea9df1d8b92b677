"""The linear model's pixels in and out of its ANS stream, compiled (numba): each value under its
discretized logistic (`LogisticTables.rows`) with a share of the weights moved to the median's
value (the spike, `_weights`), through `coding.rans`. The weights are those of the vector code
that wrote and read the files before 0.13, bit for bit (float64 operations on integers, one at
a time, in the same order), so the stream is the one constriction wrote from them."""

__all__ = ["ROW", "logistic", "add_logistic", "decode", "record"]

import numpy as np

from nfcompress.coding.primitives import FLOOR, PRECISION
from nfcompress.coding.rans import code
from nfcompress.compiled import compiled

ROW = (1 << PRECISION) - 256  # what a row of weights sums to (the coder adds 1 to each)
_TOP = ROW - 255 * FLOOR  # LogisticTables.total: the last weight is _TOP - cum


@compiled
def logistic(cum: np.ndarray, r: int, base: int, w: np.ndarray) -> None:
    """The 256 weights of `LogisticTables.rows`, of row r of its cumulative table `cum` shifted
    by base = 255 - the prediction's integer part, summing to ROW, in w (as cum's numbers)."""
    for v in range(256):
        w[v] = 0
    add_logistic(cum, r, base, 1, w)


@compiled
def add_logistic(cum: np.ndarray, r: int, base: int, m: int, w: np.ndarray) -> None:
    """Add m times `logistic`'s weights to w (a mixture's component), in one loop that vectorises."""
    line = cum[r, base:]
    w[0] += m * (line[1] + FLOOR)
    for v in range(1, 255):
        w[v] += m * (line[v + 1] - line[v] + FLOOR)
    w[255] += m * (_TOP - line[255])


@compiled
def _weights(cum: np.ndarray, r: int, base: int, q: int, at: int, spikes: int, w: np.ndarray) -> None:
    """One value's 256 weights (`logistic`); with a spike (q > 0, scheme 2 on), a share
    q / spikes of every weight above FLOOR (rounded down) moved to value `at`."""
    logistic(cum, r, base, w)
    if q == 0:
        return
    ratio = (spikes - q) / spikes
    total = 0.0
    for v in range(256):
        w[v] = np.floor((w[v] - FLOOR) * ratio) + FLOOR
        total += w[v]
    w[at] += ROW - total


@compiled
def record(
    cum: np.ndarray,
    row: np.ndarray,
    ip: np.ndarray,
    at: np.ndarray,
    q: np.ndarray,
    x: np.ndarray,
    spikes: int,
    io: tuple,
) -> np.ndarray:
    """Record values x[k] in an encoding `io`, each under the weights of table row row[k] of
    `cum` (`LogisticTables.cum`) shifted by the prediction's integer part ip[k], with a share
    q[k] / spikes moved to value at[k]; each symbol's frequency (its weight plus 1)."""
    n = x.size
    freq = np.empty(n, np.int64)
    w = np.empty(256, np.float64)
    edge = np.empty(2, np.int64)
    for k in range(n):
        r, base, s = row[k], 255 - ip[k], x[k]
        if q[k] == 0:  # the logistic's own weights: its cumulative table gives the symbol's share
            start = 0 if s == 0 else np.int64(cum[r, base + s]) + FLOOR * s + s
            if s == 0:
                f = np.int64(cum[r, base + 1]) + FLOOR
            elif s == 255:
                f = np.int64(_TOP - cum[r, base + 255])
            else:
                f = np.int64(cum[r, base + s + 1] - cum[r, base + s] + FLOOR)
            edge[0], edge[1] = start, start + f + 1
            code(io, edge, 1, 0)
            freq[k] = f + 1
            continue
        _weights(cum, r, base, q[k], at[k], spikes, w)
        start = 0
        for v in range(s):
            start += np.int64(w[v]) + 1
        edge[0], edge[1] = start, start + np.int64(w[s]) + 1
        code(io, edge, 1, 0)
        freq[k] = np.int64(w[s]) + 1
    return freq


@compiled
def decode(
    cum: np.ndarray, row: np.ndarray, ip: np.ndarray, at: np.ndarray, q: np.ndarray, spikes: int, io: tuple
) -> np.ndarray:
    """The values `record` recorded, from a decoding `io`, under the same weights."""
    n = row.size
    out = np.empty(n, np.int64)
    w = np.empty(256, np.float64)
    table = np.zeros(257, np.int64)
    for k in range(n):
        _weights(cum, row[k], 255 - ip[k], q[k], at[k], spikes, w)
        for v in range(256):
            table[v + 1] = table[v] + np.int64(w[v]) + 1
        out[k] = code(io, table, 256, 0)
    return out
