"""The linear model's decoder step, compiled: what the fitted model says of a wavefront's pixels
before they are decoded (`predict`), and what their values leave for later wavefronts
(`settle`).

A pixel at a time, the integers of `model._Layout` and the functions around it (features,
local prediction, class, prediction, feedback, activity, contexts, spike), for every scheme:
one call per wavefront instead of some twenty numpy steps, whose overhead dominated on the
short wavefronts of a decoder. The tests keep the numpy step and check both alike.
"""

__all__ = ["Plane", "State", "predict", "settle"]

from typing import NamedTuple

import numpy as np

from nfcompress.coders.linear import local
from nfcompress.coding.primitives import FRAC_BITS
from nfcompress.compiled import compiled

# `model`'s (which imports this module): its canvas padding, activity bins, JPEG block and the
# neighbours whose errors count (a test checks they agree).
TOP, LEFT, RIGHT = 3, 3, 2
BINS, BLOCK, ERRORS = 16, 8, 6
_HIGH = 255 << FRAC_BITS
_HALF = 1 << (FRAC_BITS - 1)


class Plane(NamedTuple):
    """A channel's constants for the step (see `model.decode_planes`)."""

    c: int  # the channel, in coding order
    scheme: int
    offsets: np.ndarray  # canvas offsets of its causal neighbours (`_Layout.offsets`)
    cross: np.ndarray  # offsets of the earlier channels' neighbours in their pads (`_Layout.cross`)
    weights: np.ndarray  # (sets, F) int64
    classes: int
    positions: int  # block positions each class splits into
    blocks: tuple[int, int]  # the grid's offset (0, 0 without one)
    feedback: np.ndarray  # (ERRORS,) int64; zeros, and unread, without feedback (scheme 1)
    has_feedback: bool
    spikes: np.ndarray  # int64 spike shares per spike context; one zero, unread, without spikes (scheme 1)
    has_spikes: bool
    local: bool  # whether the features hold the local prediction
    split: bool  # whether gradients and errors have bins of their own
    grid: int  # the contexts a block edge moves a pixel by (0: none)


class State(NamedTuple):
    """What a channel's decoder holds between wavefronts."""

    cv: np.ndarray  # the canvas, flat int32 (`model._canvas`'s layout), OUTSIDE where nothing is decoded yet
    pads: np.ndarray  # the earlier channels (`model._pads`)
    pre: np.ndarray  # the local predictor's prefix sums (`local.prefix_sums`; one unused row without it)
    first: np.ndarray  # the first stage's signed errors, as cv
    err: np.ndarray  # the errors under the predictions, as cv
    cross_err: np.ndarray  # the earlier channels' errors, summed and weighted, raster order
    height: int
    width: int

    @classmethod
    def start(cls, height: int, width: int, pads: np.ndarray, cross_err: np.ndarray, local_on: bool, outside: int):
        """A channel's state before its first wavefront."""
        cv = np.full((height + TOP) * (width + LEFT + RIGHT), outside, np.int32)
        pre = local.prefix_sums(height) if local_on else np.zeros((1, local.TERMS), np.int64)
        return cls(cv, pads, pre, np.zeros_like(cv), np.zeros_like(cv), cross_err, height, width)

    def inner(self, a: np.ndarray) -> np.ndarray:
        """The image's cells (H, W) of an array laid out as the canvas (cv: the channel's pixels;
        err: their errors)."""
        return a.reshape(self.height + TOP, -1)[TOP:, LEFT : LEFT + self.width]


@compiled
def _bin(a: int, thresholds: np.ndarray) -> int:
    """`model._bins` of one activity: how many thresholds it reaches."""
    k = 0
    while k < thresholds.size and thresholds[k] <= a:
        k += 1
    return k


@compiled
def _predict(
    cv, pads, pre, first, err, cross_err, i, j, w, c, scheme, offsets, cross, weights, classes, positions,
    oy, ox, feedback, has_feedback, spikes, has_spikes, local_on, split, grid, thresholds,
    p, p1, contexts, medians, shares, tex,
):  # fmt: skip
    """`predict` into p, p1, contexts, medians, shares and tex, a pixel at a time."""
    cw = w + LEFT + RIGHT
    nc, nx = offsets.size, cross.size
    x = np.zeros(weights.shape[1], np.int64)
    s = np.zeros(local.TERMS, np.int64)
    m = np.zeros((local.K + 2, local.K))
    for n in range(i.size):
        ii, jj = i[n], j[n]
        place = (ii + TOP) * cw + jj + LEFT
        for f in range(nc):
            x[f] = cv[place - offsets[f]]
        base = (ii + 1) * (w + 2) + jj + 1
        for f in range(nx):
            x[nc + f] = pads[base + cross[f]]
        x[nc + nx] = 1
        k = nc + nx + 1
        y0 = x[nc] if c > 0 else 0  # the first channel at the pixel
        for a in range(4):
            tex[a, n] = x[a] - x[nc + 1 + a] if c > 0 and scheme >= 2 else x[a]
        tw, tn, tnw, tne = tex[0, n], tex[1, n], tex[2, n], tex[3, n]
        if local_on:
            s[:] = 0
            local.window_at(pre, ii, jj, w, s)
            x[k] = int(local.predict_at(m, s, tw, tn, tnw, tne)) + local.STEPS * y0
            k += 1
        if scheme >= 2:
            x[k] = min(max(tw + tn - tnw, min(tw, tn)), max(tw, tn)) + y0
            k += 1
        grad = abs(tw - tnw) + abs(tn - tnw) + abs(tn - tne)
        if classes == 1:
            cls = 0
        elif ii < TOP or jj < LEFT or jj >= w - RIGHT:
            cls = classes * positions
        else:
            cls = _bin(grad, thresholds) * classes // BINS * positions
            if positions > 1:
                cls += ((jj - ox) % BLOCK == 0) + 2 * ((ii - oy) % BLOCK == 0)
        total = 0
        for f in range(k):
            total += x[f] * weights[cls, f]
        q1 = min(max(total, 0), _HIGH)
        q = q1
        if has_feedback:
            for e in range(ERRORS):
                q += feedback[e] * first[place - offsets[e]]
            q = min(max(q, 0), _HIGH)
        act = cross_err[ii * w + jj]
        for e in range(ERRORS):
            act += (4 if e < 2 else 2) * err[place - offsets[e]]
        if split:
            ctx = _bin(grad, thresholds) // 2 * BINS + _bin(act, thresholds)
        else:
            ctx = _bin(act + grad, thresholds)
        if grid and ((ii - oy + 1) % BLOCK < 2 or (jj - ox + 1) % BLOCK < 2):
            ctx += grid
        p[n], p1[n], contexts[n] = q, q1, ctx
        if has_spikes:
            med = min(max(x[k - 1], 0), 255)
            eq = (tw == tn) + (tn == tnw) + (tnw == tw) + (tn == tne)
            even = 2 * eq + (med == (q + _HALF) >> FRAC_BITS)
            medians[n] = med
            shares[n] = spikes[even * BINS + _bin(act, thresholds) if split else even]
        else:
            medians[n] = 0
            shares[n] = 0
        tex[4, n] = y0


def predict(pl: Plane, st: State, i: np.ndarray, j: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    """A wavefront's predictions p (weight units), first-stage predictions, scale contexts,
    spike values and spike shares (int64 each), and its texture and first channel (5, n) for
    `settle`; thresholds: `model.THRESHOLDS`."""
    n = len(i)
    p, p1, contexts, medians, shares = (np.empty(n, np.int64) for _ in range(5))
    tex = np.empty((5, n), np.int64)
    oy, ox = pl.blocks
    _predict(
        st.cv, st.pads, st.pre, st.first, st.err, st.cross_err, i, j, st.width, pl.c, pl.scheme, pl.offsets,
        pl.cross, pl.weights, pl.classes, pl.positions, oy, ox, pl.feedback, pl.has_feedback, pl.spikes,
        pl.has_spikes, pl.local, pl.split, pl.grid, thresholds, p, p1, contexts, medians, shares, tex,
    )  # fmt: skip
    return p, p1, contexts, medians, shares, tex


def settle(
    pl: Plane, st: State, i: np.ndarray, j: np.ndarray, v: np.ndarray, p: np.ndarray, p1: np.ndarray, tex: np.ndarray
) -> None:
    """Write a wavefront's values v into the canvas (and the padding cells that copy them), their
    errors under p and p1, and where the features hold the local prediction their terms (`local.TERMS`)
    into the prefix sums (tex from `predict`)."""
    _settle(st.cv, st.err, st.first, st.pre, pl.local, i, j, st.width, st.height, np.asarray(v, np.int64), p, p1, tex)


@compiled
def _settle(cv, err, first, pre, local_on, i, j, w, h, v, p, p1, tex):  # fmt: skip
    """`settle` on the state's arrays."""
    cw = w + LEFT + RIGHT
    f = np.empty(local.K, np.int64)
    for n in range(i.size):
        place = (i[n] + TOP) * cw + j[n] + LEFT
        cv[place] = v[n]
        err[place] = abs(v[n] - ((p[n] + _HALF) >> FRAC_BITS))
        first[place] = v[n] - ((p1[n] + _HALF) >> FRAC_BITS)
        if local_on:
            for a in range(4):
                f[a] = tex[a, n]
            f[4] = 1
            local.add_at(pre, i[n], j[n], f, v[n] - tex[4, n])
    if i.size == 0:  # no pixel: odd wavefronts of a one-column image
        return
    # The padding (`model._canvas`): a wavefront's rows rise and its columns fall, so only its ends lie on an edge.
    first_place = (i[0] + TOP) * cw + j[0] + LEFT
    last_place = (i[-1] + TOP) * cw + j[-1] + LEFT
    if j[0] == w - 1:
        for d in range(1, RIGHT + 1):
            cv[first_place + d] = v[0]
    if j[-1] == 0 and i[-1] < h - 1:
        for d in range(cw - LEFT, cw):
            cv[last_place + d] = v[-1]
    if i[0] == 0 and j[0] + LEFT < w + RIGHT:
        for r in range(TOP):
            cv[j[0] + 2 * LEFT + r * cw] = v[0]
