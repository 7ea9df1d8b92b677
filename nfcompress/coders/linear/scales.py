"""The linear encoder's search for each context's scale code, compiled (numba): for each context,
the first of some candidate codes under which its residuals cost the fewest bits. Only the
encoder searches, so these need not be portable; they weigh what the numpy form weighed, in its
order (a test holds them to it)."""

__all__ = ["cheapest", "cheapest_spiked"]

import numpy as np

from nfcompress.compiled import compiled


@compiled
def cheapest(
    bits: np.ndarray, ctx: np.ndarray, at: np.ndarray, n: np.ndarray, out: np.ndarray, near: bool, tried: np.ndarray
) -> None:
    """For each run of equal contexts ctx (ascending), into out[ctx]: the first code of `tried`
    (plus out[ctx] where `near`) within 0..255 under which its residuals cost the fewest bits,
    residual k costing bits[code, at[k]] n[k] times."""
    k0 = 0
    while k0 < ctx.size:
        k1 = k0
        while k1 < ctx.size and ctx[k1] == ctx[k0]:
            k1 += 1
        base = out[ctx[k0]] if near else 0
        best, least = base, np.inf
        for t in tried:
            code = base + t
            if 0 <= code <= 255:
                cost = 0.0
                for k in range(k0, k1):
                    cost += bits[code, at[k]] * n[k]
                if cost < least:
                    best, least = code, cost
        out[ctx[k0]] = best
        k0 = k1


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
    k0 = 0
    while k0 < ctx.size:
        k1 = k0
        while k1 < ctx.size and ctx[k1] == ctx[k0]:
            k1 += 1
        base = codes[ctx[k0]]
        best, least = base, np.inf
        for t in tried:
            code = base + t
            if 0 <= code <= 255:
                cost = 0.0
                for k in range(k0, k1):
                    cost += -np.log2(max((1 - share[k]) * masses[code, at[k]] + share[k] * hit[k], 1e-12)) * n[k]
                if cost < least:
                    best, least = code, cost
        codes[ctx[k0]] = best
        k0 = k1
