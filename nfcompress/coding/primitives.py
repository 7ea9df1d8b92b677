"""The exact integer primitives the payloads share: one definition each, the same integers everywhere.

Every model that codes pixels without a float network (the linear, JPEG-history and causal
models) builds its coding tables from these, and every one of them is exact: integer
arithmetic, or IEEE additions and multiplications in one fixed order, never a library's exp or
a sum whose order a vector unit may choose. docs/format.md describes each under "Shared
primitives"; changing one changes files.

- `det_exp` and `ordered_sum`: exp and a row sum that round alike on every machine.
- `LogisticTables`: the discretized logistic over the values 0..255 around a fixed-point
  prediction, for a scale code q in 0..255 (scale exp(-4 + q / 16)).
- `wavefronts` and `diagonals`: the orders in which a causal model's pixels (or a JPEG's
  blocks) decode as whole vectors.
- `push_ints` and `pop_ints`: side information, non-negative integers coded by their bit lengths.
"""

__all__ = [
    "PRECISION",
    "det_exp",
    "exp_one",
    "LOG2E",
    "EXP2",
    "ordered_sum",
    "FRAC_BITS",
    "MEAN_STEPS",
    "FLOOR",
    "CDF_TOTAL",
    "LOG_SCALE_MIN",
    "LOG_SCALE_STEP",
    "logistic_scale",
    "logistic_cumulative",
    "LogisticTables",
    "every_scale",
    "wavefronts",
    "diagonals",
    "zigzag",
    "unzigzag",
    "bit_lengths",
    "int_bits",
    "push_ints",
    "pop_ints",
]

import functools
import math
from collections.abc import Iterator

import constriction
import numpy as np

from nfcompress.compiled import compiled

# Every table's weights sum to 2**PRECISION - K for K symbols (the coder adds one to each).
PRECISION = 24
LOG2E = 1.4426950408889634  # det_exp's constants, which compiled code reads too
# 2**f = exp(f ln 2) for |f| <= 1/2 by its Taylor series to degree 8 (relative error 3e-10).
EXP2 = [math.log(2.0) ** k / math.factorial(k) for k in range(9)]


def det_exp(x: np.ndarray) -> np.ndarray:
    """exp(x), from IEEE additions, multiplications and exact scalings only: the same bits on every machine.

    It saturates at 2**-450 and 2**450 (|x| > 312), so that no result, nor a product of two, is
    subnormal: flushing subnormals to zero (as torch.set_flush_denormal does) changes nothing.
    """
    t = np.clip(np.asarray(x, np.float64) * LOG2E, -450.0, 450.0)
    k = np.rint(t)
    f = t - k
    p = np.full_like(f, EXP2[-1])
    for c in EXP2[-2::-1]:
        p *= f
        p += c
    return np.ldexp(p, k.astype(np.int32))


def ordered_sum(a: np.ndarray) -> np.ndarray:
    """Each row's sum, column by column: one order, so the same float on every machine."""
    total = a[:, 0].copy()
    for m in range(1, a.shape[1]):
        total += a[:, m]
    return total


FRAC_BITS = 12  # a prediction is an integer in units of 2**-12
MEAN_STEPS = 16  # the prediction's fraction, in 1/16, selects the table
LOG_SCALE_MIN, LOG_SCALE_STEP = -4.0, 1.0 / 16  # scale code q means scale exp(-4 + q / 16), q in 0..255
# Every value's weight is at least FLOOR: no sub-pixel costs under about 0.0014 bits, so a
# payload bounds the size it can decode to.
FLOOR = 64
CDF_TOTAL = (1 << PRECISION) - 256 * (1 + FLOOR)  # where the logistics' cumulative weights end


def logistic_scale(q: np.ndarray) -> np.ndarray:
    """The scale of scale codes q: exp(-4 + q / 16) by `det_exp`."""
    return det_exp(LOG_SCALE_MIN + LOG_SCALE_STEP * np.asarray(q, np.float64))


def logistic_cumulative(q: int) -> np.ndarray:
    """Integer cumulative weights (MEAN_STEPS, 512) of a logistic of scale code q, at edges e - 255.5
    from a prediction's integer part, for each fraction of the prediction (the same for every image)."""
    return _every_cumulative()[q]


@functools.cache
def _every_cumulative() -> np.ndarray:
    """`logistic_cumulative` of every scale code (256, MEAN_STEPS, 512), built once a process: the
    cumulative distribution 1 / (1 + det_exp(-(e - frac) / scale)) times the total, floored,
    never falling (compiled, each number by the operations of numpy's form in tests)."""
    out = np.empty((256, MEAN_STEPS, 512))
    edges = np.arange(512, dtype=np.float64) - 255.5
    _cumulatives(logistic_scale(np.arange(256)), edges, np.arange(MEAN_STEPS) / MEAN_STEPS, float(CDF_TOTAL), out)
    out.flags.writeable = False
    return out


@compiled
def _cumulatives(scale: np.ndarray, edges: np.ndarray, frac: np.ndarray, total: float, out: np.ndarray) -> None:
    """`_every_cumulative` into out."""
    for q in range(scale.size):
        for f in range(frac.size):
            top = 0.0
            for e in range(edges.size):
                cdf = 1.0 / (1.0 + exp_one(-(edges[e] - frac[f]) / scale[q]))
                top = max(top, np.floor(cdf * total))
                out[q, f, e] = top


_TAYLOR = np.array(EXP2[::-1])


@compiled
def exp_one(x: float) -> float:
    """`det_exp` of one number, with its operations in its order (for compiled loops)."""
    t = min(max(x * LOG2E, -450.0), 450.0)
    k = np.rint(t)
    f = t - k
    p = _TAYLOR[0]
    for c in _TAYLOR[1:]:
        p *= f
        p += c
    return np.ldexp(p, np.int32(k))


class LogisticTables:
    """A channel's integer weights for every context (its scale) and fraction of a prediction."""

    def __init__(self, scales: np.ndarray) -> None:
        self.cum = _every_cumulative()[np.asarray(scales, np.int64)].reshape(-1, 512)
        pmf = np.diff(self.cum, axis=1) + FLOOR
        self.windows = np.lib.stride_tricks.sliding_window_view(pmf, 256, axis=1)
        self.total = float(CDF_TOTAL + FLOOR)

    @staticmethod
    def index(p: np.ndarray, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each prediction's row of `cum` (its context and fraction) and its integer part (int64)."""
        p = np.asarray(p, np.int64)
        return contexts.astype(np.int64) * MEAN_STEPS + ((p >> (FRAC_BITS - 4)) & (MEAN_STEPS - 1)), p >> FRAC_BITS

    def rows(self, p: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        """The weights (n, 256) of the values 0..255, summing to 2**PRECISION - 256, for each
        prediction p (in units of 2**-FRAC_BITS) and scale context.

        A discretized logistic around the prediction, the tails beyond 0 and 255 folded into
        the end values, every value FLOOR more.
        """
        row, ip = self.index(p, contexts)
        out = self.windows[row, 255 - ip]
        out[:, 0] = self.cum[row, 256 - ip] + FLOOR
        out[:, 255] = self.total - self.cum[row, 510 - ip]
        return out


@functools.cache
def every_scale() -> LogisticTables:
    """The discretized logistics of every scale code 0..255 (context q is scale code q), built once."""
    return LogisticTables(np.arange(256))


def wavefronts(h: int, w: int, slope: int = 2) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each wavefront t = slope i + j in order, its rows i and columns j. A steeper slope
    takes more of the row above before a pixel (slope 3: its N, NE and the cell right of NE)."""
    for t in range(slope * (h - 1) + w):
        i = np.arange(max(0, -(-(t - w + 1) // slope)), min(h - 1, t // slope) + 1, dtype=np.int64)
        yield i, t - slope * i


def diagonals(rows: int, cols: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each diagonal t = i + j in order, its rows i and columns j (the JPEG-history model's block order)."""
    out = []
    for t in range(rows + cols - 1):
        i = np.arange(max(0, t - cols + 1), min(rows, t + 1))
        out.append((i, t - i))
    return out


def zigzag(v: np.ndarray) -> np.ndarray:
    """Signed integers as non-negative ones: 0, -1, 1, -2, ... to 0, 1, 2, 3, ..."""
    return np.where(v >= 0, 2 * v, -2 * v - 1).astype(np.int64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    """The inverse of `zigzag`."""
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_RAW16 = constriction.stream.model.Uniform(1 << 16)
_LENGTHS = 33  # bit lengths of the integers `push_ints` codes: 0..32
_CENTRES = constriction.stream.model.Uniform(_LENGTHS)


@functools.lru_cache(maxsize=_LENGTHS)
def _length_weights(m: int) -> np.ndarray:
    """Integer weights (33,) of bit lengths, halving with each step away from m, summing to
    2**PRECISION - 33."""
    out = np.floor(2.0 ** (PRECISION - 2 - np.abs(np.arange(_LENGTHS) - m)))
    out[m] += (1 << PRECISION) - _LENGTHS - out.sum()
    out.flags.writeable = False
    return out


def bit_lengths(u: np.ndarray) -> np.ndarray:
    """The bit length of each |u| (0 for 0): frexp's exponent, exact for integers below 2**53."""
    return np.frexp(np.abs(np.asarray(u)).astype(np.float64))[1].astype(np.int64)


def int_bits(u: np.ndarray) -> tuple[int, float]:
    """The centre `push_ints` picks for integers u, and the bits they then cost."""
    b = bit_lengths(u)
    mantissas = float(np.maximum(b - 1, 0).sum()) + np.log2(_LENGTHS)
    costs = [PRECISION * len(u) - np.log2(_length_weights(m)[b] + 1).sum() for m in range(_LENGTHS)]
    m = int(np.argmin(costs))
    return m, costs[m] + mantissas


def push_ints(coder, u: np.ndarray) -> None:
    """Push non-negative integers below 2**32: a centre m, each one's bit length (`_length_weights(m)`),
    then, length by length, the bits below each one's leading 1 (at most 16 to a symbol)."""
    m, _ = int_bits(u)
    b = bit_lengths(u)
    for length in sorted(set(b[b >= 2].tolist()), reverse=True):
        low = u[b == length] - (1 << (length - 1))
        width = length - 1
        if width > 16:
            coder.encode_reverse((low & 0xFFFF).astype(np.int32), _RAW16)
            coder.encode_reverse((low >> 16).astype(np.int32), constriction.stream.model.Uniform(1 << (width - 16)))
        else:
            coder.encode_reverse(low.astype(np.int32), constriction.stream.model.Uniform(1 << width))
    rows = np.broadcast_to(_length_weights(m), (len(u), _LENGTHS))
    coder.encode_reverse(b.astype(np.int32), _CATEGORICAL, np.ascontiguousarray(rows))
    coder.encode_reverse(np.array([m], np.int32), _CENTRES)


def pop_ints(coder, n: int) -> np.ndarray:
    """The n integers `push_ints` pushed."""
    m = int(coder.decode(_CENTRES, 1)[0])
    b = coder.decode(_CATEGORICAL, np.ascontiguousarray(np.broadcast_to(_length_weights(m), (n, _LENGTHS))))
    b = b.astype(np.int64)
    u = np.where(b > 0, np.left_shift(1, np.maximum(b - 1, 0)), 0).astype(np.int64)
    for length in sorted(set(b[b >= 2].tolist())):
        where, width = np.flatnonzero(b == length), length - 1
        if width > 16:
            high = coder.decode(constriction.stream.model.Uniform(1 << (width - 16)), len(where)).astype(np.int64)
            u[where] += (high << 16) | coder.decode(_RAW16, len(where)).astype(np.int64)
        else:
            u[where] += coder.decode(constriction.stream.model.Uniform(1 << width), len(where)).astype(np.int64)
    return u
