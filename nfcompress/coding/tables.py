"""Prior parameters -> integer frequency tables over a window around each latent's mean.

This is the one place where probabilities become integers. Every table is a row of
non-negative integer weights summing to exactly 2**PRECISION - K for K symbols (the coder gives
each symbol one more), computed in float64 on the CPU from the prior's float32 parameters, so
the same parameters always give the same integers.

A latent codes as its offset inside a window of 2h+1 integers centred on the mixture's rounded
mean, or as an escape. Windows of 17 integers or more code in two stages, a coarse bin of `bin`
integers and then the offset inside that bin, so a latent needs two short tables (6 + 8 entries
for 33 integers) instead of one long one: building tables is most of the codec's CPU time
beside the network.

Files written before format version 3 used other tables (`legacy`): single stages up to 33
integers and the sigmoid through tanh. They are kept so that those files still decode.

Portable files (`portable`) must give the same integers on every machine, and numpy's exp may
differ in the last bit between vector units (it has its own AVX-512 code): their tables take
the mixture's raw logits and use `det_exp`, built from additions and multiplications alone,
which IEEE arithmetic rounds alike everywhere.
"""

__all__ = [
    "PRECISION",
    "HALF_WIDTHS",
    "Bucket",
    "plan_buckets",
    "coarse_weights",
    "fine_weights",
    "coarse_weights_of",
    "fine_weights_of",
]

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from nfcompress.coding.primitives import PRECISION, det_exp, ordered_sum

HALF_WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SCALES_COVERED = 10.0
MIN_WEIGHT = 1e-4  # components lighter than this do not widen the window
CHUNK = 8192
_POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))


def _bin_size(half: int, legacy: bool) -> int:
    if legacy:
        return 1 if half <= 16 else 1 << int(np.ceil(np.log2(np.sqrt(2 * half + 1))))
    # The power of two nearest the square root of the window: the fewest edges for both stages.
    return 1 if half <= 4 else 1 << int(np.round(np.log2(np.sqrt(2 * half + 1))))


@dataclass
class Bucket:
    """Latents sharing a window size, with their mixture parameters (float64, (n, M))."""

    index: np.ndarray  # (n,) positions in the flat latent array
    low: np.ndarray  # (n,) int64 first integer of each window
    half: int
    weights: np.ndarray
    means: np.ndarray
    inv_scales: np.ndarray
    legacy: bool = False  # the tables of files before format version 3
    portable: bool = False  # the same integers on every machine (det_exp)

    @property
    def bin(self) -> int:
        """Integers per coarse bin (1: a single-stage table)."""
        return _bin_size(self.half, self.legacy)

    @property
    def bins(self) -> int:
        """Coarse symbols before the escape."""
        return -(-(2 * self.half + 1) // self.bin)

    @property
    def escape(self) -> int:
        """The coarse symbol that says 'outside the window'."""
        return self.bins


def _sigmoid(x: np.ndarray, legacy: bool, portable: bool) -> np.ndarray:
    if legacy:
        return 0.5 + 0.5 * np.tanh(0.5 * x)
    if portable:
        x = det_exp(np.negative(x, out=x))
    else:
        # In place: 1 / (1 + exp(-x)), with exp(+large) = inf giving 0 (2.6x faster than tanh here).
        with np.errstate(over="ignore"):
            np.exp(np.negative(x, out=x), out=x)
    x += 1.0
    return np.reciprocal(x, out=x)


def _cdf(w: np.ndarray, mu: np.ndarray, inv_s: np.ndarray, edges: np.ndarray, legacy: bool, portable: bool):
    """Mixture CDF at edges (n, E)."""
    out = np.zeros(edges.shape)
    for m in range(w.shape[1]):
        out += w[:, m : m + 1] * _sigmoid((edges - mu[:, m : m + 1]) * inv_s[:, m : m + 1], legacy, portable)
    return out


def _quantize(cum: np.ndarray) -> np.ndarray:
    """Cumulative masses (n, K-1), rising from 0 to at most 1, -> integer weights (n, K)."""
    k = cum.shape[1] + 1
    total = (1 << PRECISION) - k
    c = np.floor(np.clip(cum, 0.0, 1.0) * total)
    np.maximum.accumulate(c, axis=1, out=c)
    weights = np.diff(c, axis=1, prepend=0.0, append=float(total))
    if (weights < 0).any():  # impossible after the clip and accumulate; guards the Rust core
        raise ArithmeticError("negative frequency in a coding table")
    return weights


def _coarse_chunk(w, mu, inv_s, low, step: int, bins: int, legacy: bool, portable: bool) -> np.ndarray:
    edges = low[:, None] - 0.5 + step * np.arange(bins + 1, dtype=np.float64)[None, :]
    cdf = _cdf(w, mu, inv_s, edges, legacy, portable)
    return _quantize(cdf[:, 1:] - cdf[:, :1])  # window symbols, then the escape takes the rest


def _fine_chunk(w, mu, inv_s, start, step: int, legacy: bool, portable: bool) -> np.ndarray:
    edges = start[:, None] - 0.5 + np.arange(step + 1, dtype=np.float64)[None, :]
    cdf = _cdf(w, mu, inv_s, edges, legacy, portable)
    mass = cdf[:, -1:] - cdf[:, :1]
    cum = (cdf[:, 1:-1] - cdf[:, :1]) / np.where(mass > 0, mass, 1.0)
    flat = np.arange(1, step, dtype=np.float64)[None, :] / step
    return _quantize(np.where(mass > 0, cum, flat))


def _chunks(fn, b: Bucket, sel: np.ndarray, *args) -> list[tuple]:
    """A table builder's calls over rows `sel` of a bucket, in chunks of CHUNK rows."""
    return [
        (fn, b.weights[s], b.means[s], b.inv_scales[s], args[0][i : i + CHUNK], *args[1:])
        for i in range(0, len(sel), CHUNK)
        for s in [sel[i : i + CHUNK]]
    ]


def _run(jobs: list[list[tuple]]) -> list[np.ndarray]:
    """Every bucket's chunks at once, so that many small buckets share the pool; results per bucket.

    Tables for fewer than CHUNK rows in all are built in the calling thread: handing them to a
    thread costs more than building them (small images).
    """
    calls = [c for chunks in jobs for c in chunks]
    if sum(len(c[1]) for c in calls) <= CHUNK:
        results = [c[0](*c[1:]) for c in calls]
    else:
        futures = [_POOL.submit(*c) for c in calls]
        results = [f.result() for f in futures]
    out, i = [], 0
    for chunks in jobs:
        out.append(np.concatenate(results[i : i + len(chunks)]) if chunks else np.zeros((0, 1)))
        i += len(chunks)
    return out


def coarse_weights_of(buckets: list[Bucket]) -> list[np.ndarray]:
    """`coarse_weights` of several buckets, built together."""
    return _run(
        [
            _chunks(
                _coarse_chunk, b, np.arange(len(b.index)), b.low.astype(np.float64), b.bin, b.bins, b.legacy, b.portable
            )
            for b in buckets
        ]
    )


def fine_weights_of(buckets: list[Bucket], rows: list[np.ndarray], coarse: list[np.ndarray]) -> list[np.ndarray]:
    """`fine_weights` of several buckets, built together."""
    return _run(
        [
            _chunks(_fine_chunk, b, r, (b.low[r] + c * b.bin).astype(np.float64), b.bin, b.legacy, b.portable)
            for b, r, c in zip(buckets, rows, coarse)
        ]
    )


def coarse_weights(b: Bucket) -> np.ndarray:
    """Integer weights (n, bins + 1) of each latent's coarse symbol (its offset, if bin == 1)."""
    return coarse_weights_of([b])[0]


def fine_weights(b: Bucket, rows: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Integer weights (len(rows), bin) of the offset inside bin `coarse` of latents `rows`."""
    return fine_weights_of([b], [rows], [coarse])[0]


def plan_buckets(
    log_weights: np.ndarray, means: np.ndarray, log_scales: np.ndarray, legacy: bool = False, portable: bool = False
) -> list[Bucket]:
    """Group n latents with mixture parameters (n, M) by window size (`legacy`: as before version 3).

    The window is centred on the rounded mixture mean and reaches every non-negligible
    component's mean plus SCALES_COVERED of its scales (capped; the rest escapes). `portable`:
    `log_weights` are raw logits, normalised here, and every exp is `det_exp`.
    """
    mu = means.astype(np.float64)
    ls = log_scales.astype(np.float64)
    if portable:
        logits = log_weights.astype(np.float64)
        e = det_exp(logits - logits.max(1, keepdims=True))
        w = e / ordered_sum(e)[:, None]
        scales = det_exp(ls)
        inv_s = 1.0 / scales
        weighted = ordered_sum(w * mu)
    else:
        with np.errstate(over="ignore"):  # a wild scale (a damaged file's latents) is inf: it escapes
            w = np.exp(log_weights.astype(np.float64))
            scales = np.exp(ls)
            inv_s = np.exp(-ls)
        weighted = (w * mu).sum(1)
    centre = np.round(weighted)
    reach = np.where(w > MIN_WEIGHT, np.abs(mu - centre[:, None]) + SCALES_COVERED * scales, 0.0).max(1)
    sizes = np.asarray(HALF_WIDTHS)
    which = np.minimum(np.searchsorted(sizes, reach), len(sizes) - 1)
    buckets = []
    for i, half in enumerate(HALF_WIDTHS):
        idx = np.flatnonzero(which == i)
        if len(idx):
            low = centre[idx].astype(np.int64) - half
            buckets.append(Bucket(idx, low, half, w[idx], mu[idx], inv_s[idx], legacy, portable))
    return buckets
