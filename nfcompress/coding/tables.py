"""Prior parameters -> integer frequency tables over a window around each latent's mean.

This is the one place where probabilities become integers. Every table is a row of
non-negative integer weights summing to exactly 2**PRECISION - K (the coder gives each symbol
one more), computed in float64 on the CPU from the prior's float32 parameters, so the same
parameters always give the same integers.
"""

__all__ = ["PRECISION", "HALF_WIDTHS", "Bucket", "build_tables"]

from dataclasses import dataclass

import numpy as np

PRECISION = 24
# Window half-widths h: a window holds the 2h+1 integers around the centre, then an escape.
HALF_WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256)
SCALES_COVERED = 10.0
CHUNK = 16384


@dataclass
class Bucket:
    """Symbols sharing a window size: their positions, window starts, and integer tables."""

    index: np.ndarray  # (n,) int64 positions in the flat latent array
    low: np.ndarray  # (n,) int64 first integer of each window
    half: int  # window half-width; the escape symbol is 2 * half + 1
    weights: np.ndarray  # (n, 2 * half + 2) float64 holding integers

    @property
    def escape(self) -> int:
        """The symbol that says 'outside the window'."""
        return 2 * self.half + 1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _table(lw: np.ndarray, mu: np.ndarray, ls: np.ndarray, low: np.ndarray, half: int) -> np.ndarray:
    """Integer weights (n, 2h+2) for mixtures (n, M) over [low, low + 2h] plus an escape."""
    k = 2 * half + 1
    edges = low[:, None].astype(np.float64) - 0.5 + np.arange(k + 1, dtype=np.float64)[None, :]
    inv_s = np.exp(-ls)
    w = np.exp(lw)
    cdf = np.zeros((len(low), k + 1))
    for m in range(lw.shape[1]):
        cdf += w[:, m : m + 1] * _sigmoid((edges - mu[:, m : m + 1]) * inv_s[:, m : m + 1])
    mass = np.empty((len(low), k + 1))
    mass[:, :k] = np.diff(cdf, axis=1)
    mass[:, k] = 1.0 - (cdf[:, k] - cdf[:, 0])
    np.maximum(mass, 0.0, out=mass)
    cum = np.cumsum(mass, axis=1)
    total = (1 << PRECISION) - (k + 1)
    scaled = np.floor(cum * (total / cum[:, -1:]))
    scaled[:, -1] = total
    weights = np.diff(scaled, axis=1, prepend=0.0)
    if (weights < 0).any():  # impossible for a monotone cumsum; guards the Rust core
        raise ArithmeticError("negative frequency in a coding table")
    return weights


def build_tables(log_weights: np.ndarray, means: np.ndarray, log_scales: np.ndarray) -> list[Bucket]:
    """Tables for n latents with mixture parameters (n, M) each, grouped by window size.

    The window is centred on the rounded mixture mean and wide enough for every component's
    mean plus SCALES_COVERED of its scales (capped; the rest escapes).
    """
    lw = log_weights.astype(np.float64)
    mu = means.astype(np.float64)
    ls = log_scales.astype(np.float64)
    centre = np.round((np.exp(lw) * mu).sum(1))
    reach = (np.abs(mu - centre[:, None]) + SCALES_COVERED * np.exp(ls)).max(1)
    sizes = np.asarray(HALF_WIDTHS)
    which = np.minimum(np.searchsorted(sizes, reach), len(sizes) - 1)
    buckets = []
    for b, half in enumerate(HALF_WIDTHS):
        idx = np.flatnonzero(which == b)
        if len(idx) == 0:
            continue
        low = centre[idx].astype(np.int64) - half
        parts = [
            _table(lw[idx[i : i + CHUNK]], mu[idx[i : i + CHUNK]], ls[idx[i : i + CHUNK]], low[i : i + CHUNK], half)
            for i in range(0, len(idx), CHUNK)
        ]
        buckets.append(Bucket(idx, low, half, np.concatenate(parts)))
    return buckets
