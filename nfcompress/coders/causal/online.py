"""A plane network's output layer tuned to the image as it codes: after each wavefront, a step of
RMSprop down the bits of the sub-pixels it just coded, which the decoder, having decoded them,
takes too. No side information: the steps are a function of decoded values alone.

The steps change a copy of the output layer's weights, `Online.change` (outputs, hidden + 1: the
last column for the bias), integers in 2**-CHANGE_BITS of a float network's weight. The products
with the hidden activations (integers in 2**-8) are integers under 2**53, summed in float64 in
any order to the same integers. The gradient of a sub-pixel's bits is taken in float64 with IEEE
operations in a fixed order from the codec's own integer tables of the logistics (the same bits
on every machine), rounded to an integer in 2**-GRAD_BITS, and summed over the wavefront as
integers; RMSprop's running mean of the squared sums and its step are per weight, again IEEE
operations in a fixed order.
"""

from __future__ import annotations

__all__ = ["Online", "start", "correct", "learn", "adapt"]

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nfcompress.coders.causal.symbols import ACT_BITS, MEAN_SCALE, MIX_BITS, OUT_BITS, SUBSTEP_BITS, parts, table
from nfcompress.coding.primitives import CDF_TOTAL, FRAC_BITS, MEAN_STEPS, logistic_scale
from nfcompress.compiled import compiled, compiled_integer_sums, compiled_unchecked_division

if TYPE_CHECKING:
    from nfcompress.coders.causal.model import PlaneWeights  # which imports this module

CHANGE_BITS = 20  # a weight change counts in 2**-20 of a float network's weight
CHANGE_LIMIT = float(1 << 24)  # no change's magnitude passes this (16 in float weights)
HIDDEN_LIMIT = float(1 << 20)  # hidden activations are clipped to this for the changes' products
GRAD_BITS = 10  # a sub-pixel's gradient of its bits counts in 2**-10
GRAD_LIMIT = float(1 << 15)  # and is clipped to this
DECAY = 0.99  # the running mean of the squared gradient keeps this much a wavefront
EPSILON = 1e-3 * 2.0 ** (ACT_BITS + GRAD_BITS)  # added to its root (gradients in the units summed)
_CDF_TOTAL = float(CDF_TOTAL)


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`symbols.table()` and 1 / scale of each scale code, the form the compiled loops read."""
    return (*table(), 1.0 / logistic_scale(np.arange(256)))


@dataclass
class Online:
    """One plane's tuning in each of a batch of images: the changes to its output layer and
    RMSprop's running means (both (images, outputs, hidden + 1) float64), and its step."""

    change: np.ndarray
    mean_square: np.ndarray
    rate: float
    decayed: np.ndarray  # (images,): DECAY to the power of the steps taken, for RMSprop's bias correction


def start(network: PlaneWeights, rate: float, images: int = 1) -> Online:
    """The tuning of a plane network in `images` images decoded together, before its first
    wavefront: no change; RMSprop's steps of `rate` (in float weights)."""
    hidden, outputs = network.out.shape
    shape = (images, outputs, hidden + 1)
    return Online(np.zeros(shape), np.zeros(shape), rate, np.ones(images))


@compiled_integer_sums
def _correct(change: np.ndarray, hidden: np.ndarray, o: np.ndarray) -> None:
    n, outs, m = o.shape[0], o.shape[1], hidden.shape[1]
    bias = 2.0**ACT_BITS
    for a in range(n):
        for c in range(outs):
            s = change[c, m] * bias
            for r in range(m):
                s += min(hidden[a, r], HIDDEN_LIMIT) * change[c, r]
            o[a, c] += np.floor(s / 2.0 ** (CHANGE_BITS - OUT_BITS + ACT_BITS))


@compiled
def _correct_each(change: np.ndarray, hidden: np.ndarray, o: np.ndarray) -> None:
    size = len(o) // len(change)
    for n in range(len(change)):
        _correct(change[n], hidden[n * size : (n + 1) * size], o[n * size : (n + 1) * size])


def correct(tuning: Online, hidden: np.ndarray, o: np.ndarray) -> None:
    """Add the tuning's changes to outputs o (n, 3 K) of hidden activations (n, hidden), in place:
    the rows are the images' in turn, as many each."""
    _correct_each(tuning.change, hidden, o)


@compiled_unchecked_division
def _gradient(
    p: np.ndarray, q: np.ndarray, mix: np.ndarray, a: int, x: int, tab: tuple, g: np.ndarray, work: np.ndarray
) -> None:
    """Sub-pixel a's gradient of its bits (in nats) by the float network's outputs (times
    2**GRAD_BITS, rounded and clipped) into g (3 K), under the mixture `symbols.parts` made of
    its outputs (components' predictions p, scale codes q and weights mix, (n, K) each): the
    logistics' cumulative weights at the value's edges from the codec's tables (`tab`:
    `symbols.table()` and each scale code's 1 / scale), so no exp; `work` (3, K) is scratch."""
    cum, inverse = tab[0], tab[3]
    k = p.shape[1]
    mass, d_mean, d_scale = work[0], work[1], work[2]
    total = 0.0
    for c in range(k):
        row = q[a, c] * MEAN_STEPS + ((p[a, c] >> SUBSTEP_BITS) & (MEAN_STEPS - 1))
        at = 256 - (p[a, c] >> FRAC_BITS) + x  # the value's upper edge in the row
        high = _CDF_TOTAL if x == 255 else float(cum[row, at])
        low = 0.0 if x == 0 else float(cum[row, at - 1])
        su, cu = high / _CDF_TOTAL, (_CDF_TOTAL - high) / _CDF_TOTAL  # sig(u), sig(-u)
        sl, cl = low / _CDF_TOTAL, (_CDF_TOTAL - low) / _CDF_TOTAL
        m = max(high - low, 1.0) / _CDF_TOTAL
        inv = inverse[q[a, c]]
        mean = (p[a, c] >> SUBSTEP_BITS) / MEAN_STEPS  # in grey levels, to the 1/16 the tables take
        u, lo = (x + 0.5 - mean) * inv, (x - 0.5 - mean) * inv
        du, dl = su * cu, sl * cl
        mass[c] = m
        d_mean[c] = -(du - dl) * inv / m
        d_scale[c] = -(du * u - dl * lo) / m if 0 < q[a, c] < 255 else 0.0
        total += mix[a, c] / 2.0**MIX_BITS * m
    total = max(total, 1e-300)
    for c in range(k):
        weight = mix[a, c] / 2.0**MIX_BITS
        r = weight * mass[c] / total
        parts = (-r * d_mean[c] * MEAN_SCALE, -r * d_scale[c], weight - r)
        for t in range(3):
            v = parts[t] * 2.0**GRAD_BITS
            v = 0.0 if v != v else min(max(v, -GRAD_LIMIT), GRAD_LIMIT)
            g[t * k + c] = np.rint(v)


@compiled_integer_sums
def _accumulate(hidden: np.ndarray, g: np.ndarray, a: int, total: np.ndarray) -> None:
    # GRAD_LIMIT * HIDDEN_LIMIT * a wavefront's at most 2**16 sub-pixels: under 2**51
    m = hidden.shape[1]
    bias = 2.0**ACT_BITS
    for c in range(g.size):
        gc = g[c]
        for r in range(m):
            total[c, r] += min(hidden[a, r], HIDDEN_LIMIT) * gc
        total[c, m] += bias * gc


@compiled
def _learn(
    change: np.ndarray,
    mean_square: np.ndarray,
    hidden: np.ndarray,
    mixture: tuple,
    x: np.ndarray,
    lo: int,
    hi: int,
    rate: float,
    decayed: np.ndarray,
    n: int,
    tab: tuple,
) -> None:
    """A step down the bits of sub-pixels lo..hi (one wavefront, of image n) under their
    mixtures into change, mean_square and decayed[n]."""
    p, q, mix = mixture
    total = np.zeros(change.shape)
    g = np.empty(3 * p.shape[1])
    work = np.empty((3, p.shape[1]))
    for a in range(lo, hi):
        _gradient(p, q, mix, a, x[a], tab, g, work)
        _accumulate(hidden, g, a, total)
    decayed[n] *= DECAY
    _step(change, mean_square, total, rate, 1.0 - decayed[n])


@compiled_unchecked_division
def _step(change: np.ndarray, mean_square: np.ndarray, total: np.ndarray, rate: float, weight: float) -> None:
    """RMSprop's step of each weight's change down its wavefront's gradient sum `total`, the
    running mean of the squares over its `weight` (1 - DECAY^steps: Adam's bias correction)."""
    for c in range(change.shape[0]):
        for r in range(change.shape[1]):
            t = total[c, r]
            mean_square[c, r] = DECAY * mean_square[c, r] + (1.0 - DECAY) * (t * t)
            step = rate * t / (np.sqrt(mean_square[c, r] / weight) + EPSILON)
            change[c, r] = min(max(change[c, r] - np.rint(step * 2.0**CHANGE_BITS), -CHANGE_LIMIT), CHANGE_LIMIT)


@compiled
def _learn_each(
    change: np.ndarray,
    mean_square: np.ndarray,
    hidden: np.ndarray,
    mixture: tuple,
    x: np.ndarray,
    rate: float,
    decayed: np.ndarray,
    tab: tuple,
) -> None:
    size = len(x) // len(change)
    for n in range(len(change)):
        _learn(change[n], mean_square[n], hidden, mixture, x, n * size, (n + 1) * size, rate, decayed, n, tab)


def learn(tuning: Online, hidden: np.ndarray, mixture: tuple, x: np.ndarray) -> None:
    """The step after a wavefront: its sub-pixels' hidden activations (n, hidden), the mixtures
    they were coded under (`symbols.parts` of the corrected outputs) and their values, the
    images' rows in turn, as many each."""
    _learn_each(tuning.change, tuning.mean_square, hidden, mixture, x, tuning.rate, tuning.decayed, _tables())


@compiled
def _adapt(
    change: np.ndarray,
    mean_square: np.ndarray,
    hidden: np.ndarray,
    o: np.ndarray,
    centre: np.ndarray,
    x: np.ndarray,
    ends: np.ndarray,
    rate: float,
    decayed: np.ndarray,
    tab: tuple,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = o.shape[1] // 3
    mixture = (np.empty((len(x), k), np.int64), np.empty((len(x), k), np.int64), np.empty((len(x), k), np.int64))
    lo = 0
    for hi in ends:
        _correct(change, hidden[lo:hi], o[lo:hi])
        p, q, mix = parts(o[lo:hi], centre[lo:hi])
        mixture[0][lo:hi], mixture[1][lo:hi], mixture[2][lo:hi] = p, q, mix
        _learn(change, mean_square, hidden, mixture, x, lo, hi, rate, decayed, 0, tab)
        lo = hi
    return mixture


def adapt(
    tuning: Online, hidden: np.ndarray, o: np.ndarray, centre: np.ndarray, x: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The encoder's `correct` and `learn` of whole wavefronts of one image in one loop:
    sub-pixels in coding order, wavefronts ending at `ends` (exclusive; the last is len(x)); o
    corrected in place, and the mixtures it gives (`symbols.parts`) returned for the coding."""
    return _adapt(
        tuning.change[0], tuning.mean_square[0], hidden, o, centre, x, ends, tuning.rate, tuning.decayed, _tables()
    )
