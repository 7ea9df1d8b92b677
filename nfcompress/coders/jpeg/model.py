"""The JPEG-history model: a photo that was once a JPEG is coded as that JPEG's quantized DCT
coefficients, found again from its pixels, plus the pixels' differences from an exact decoding.

The decoding is libjpeg(-turbo)'s (nfcompress.coders.jpeg.libjpeg). Where the photo was decoded that way,
most blocks come back exactly and the differences are nearly free; where it was not, the
differences cost bits, never correctness.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import constriction
import numpy as np

from nfcompress.coders.jpeg.libjpeg import (
    QUALITIES,
    SAMPLINGS,
    B,
    JpegModel,
    idct_block,
    plane_shapes,
    reconstruct,
    rgb_one,
    samples,
    shifted,
    standard_quant,
    to_blocks,
    upsample,
    upsampled_at,
    ycc_to_rgb,
)
from nfcompress.coders.linear.model import block_grid
from nfcompress.coding.primitives import bit_lengths, diagonals, pop_ints, push_ints
from nfcompress.compiled import compiled
from nfcompress.errors import FormatError

LIMIT = 1 << 15  # every coefficient's magnitude is below this
CATEGORIES = 16  # a value is coded as its bit length (a category) and then its lower bits raw
BANDS = (1, 3, 6, 10, 15, 21, 28, 36, 64)  # zigzag indices where each AC band starts
BUCKETS = 12
KINDS = 2  # luma, chroma
AC_CONTEXTS = KINDS * (len(BANDS) - 1) * BUCKETS
DC_CONTEXTS = KINDS * BUCKETS
LOUDNESS = 4  # a flagged block's classes: the bit length of its largest difference, 1, 2, 3, 4+
RESIDUAL_CONTEXTS = 3 * LOUDNESS  # by plane and class
CONTEXTS = AC_CONTEXTS + DC_CONTEXTS + RESIDUAL_CONTEXTS + 2
FLAG_CONTEXT, LOUDNESS_CONTEXT = CONTEXTS - 2, CONTEXTS - 1
PRECISION = 24
_TOTAL = (1 << PRECISION) - 256
FLOOR = 64  # so every symbol costs at least MIN_BITS, and a payload too short for its size is refused
MIN_BITS = -float(np.log2((_TOTAL - (CATEGORIES - 1) * FLOOR) / _TOTAL))
MIN_SIDE = 64  # smaller images are left to the other models: the counts alone would cost too much
ESTIMATE_VALUES = 4096  # coefficients per frequency that estimate its step, at most
CROP = 256  # the side of the central crop that shows a JPEG and picks the chroma sampling
CHECKED = 21  # the zigzag frequencies that show a JPEG's steps
# The offsets are tried with dividing tables (a JPEG saved again) on images of this many pixels or
# more: on 42 256x256 crops saved twice (qualities 30-85, then 60-95) they made the files 20.5%
# smaller (8 of them 1.7-6 times), on 200 native 64x64 crops (whose steps show no libjpeg table
# at any offset on 64 of them) the survey took 20% longer and they coded 0.06% larger.
DIVIDED_FROM = 128 * 128
MIN_STEPS = 8  # luma quantizer steps above 1 that show a JPEG where no libjpeg table fits
REFINE_STEPS = 16
POLISH_STEPS = 4  # single-coefficient moves `_polished` makes a block's coefficients at most
POLISH_SHARE = 0.5  # the share of an image's pixels at most that its fit may miss to be polished
EDGE_STEPS, EDGE_STEP = 32, 0.25  # `_edge_start`'s steps, and the share of each miss a step moves
MOVES = 8  # single-coefficient moves tried on a block whose error rounds to no step
SCALES = (2, 3, 4, 6, 8)  # and its error's DCT times these, rounded
DECONVOLVE_STEPS = 4  # each leaves at most half the error of the one before
UNKNOWN_WEIGHT = 1e-3  # a clipped pixel's weight in finding chroma samples (a known one's: 1)
CLEAN_BLOCKS = 64  # the fewest unclipped blocks that estimate the quantizer steps alone
FIT = 0.8  # the share of coefficients a quantizer step must fit
STANDARD_HITS, STANDARD_SHARE = 4, 0.6  # settled steps a libjpeg table must match
HINT_SHARE = 0.5  # settled chroma steps the luma table's quality must match or divide
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()
_SAMPLING_CODES = constriction.stream.model.Uniform(len(SAMPLINGS))
_QUANT = constriction.stream.model.Uniform(256)
_OFFSETS = constriction.stream.model.Uniform(16)

# JPEG's zigzag order of the 64 frequencies (row-major indices), by antidiagonals
ZIGZAG = np.array(sorted(range(B * B), key=lambda i: (i // B + i % B, i % B if (i // B + i % B) % 2 == 0 else i // B)))

_UV = [(int(z) // B, int(z) % B) for z in ZIGZAG]  # each zigzag frequency's (row, column)

_N = np.arange(B)
_DCT = np.sqrt(2 / B) * np.cos((2 * _N[None, :] + 1) * _N[:, None] * np.pi / (2 * B))
_DCT[0] /= np.sqrt(2)


def fdct(blocks: np.ndarray) -> np.ndarray:
    """The orthonormal float DCT of blocks (..., 8, 8), scaled as JPEG's coefficients (x 8 / 8)."""
    return _DCT @ blocks @ _DCT.T


def _float_planes(rgb: np.ndarray) -> list[np.ndarray]:
    """JPEG's Y, Cb, Cr of the pixels, unrounded."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return [
        0.299 * r + 0.587 * g + 0.114 * b,
        -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128,
        0.5 * r - 0.418687589 * g - 0.081312411 * b + 128,
    ]


def _integer_planes(rgb: np.ndarray, near: list[np.ndarray]) -> list[np.ndarray]:
    """Full-resolution integer Y, Cb, Cr that `ycc_to_rgb` turns into the pixels, where some do:
    of those within 1 of the rounded conversion, the nearest to the planes `near`."""
    base = [np.clip(np.round(p), 0, 255).astype(np.int32).ravel() for p in _float_planes(rgb)]
    target = rgb.astype(np.int32).reshape(-1, 3)
    near = [p.ravel() for p in near]
    best = [p.astype(np.int64) for p in base]
    # The rounded conversion is the nearest candidate where it is valid and within 1/2 of `near`.
    settled = np.all(ycc_to_rgb(*base) == target, -1)
    settled &= np.all([np.abs(p - n) <= 0.5 for p, n in zip(base, near, strict=True)], axis=0)
    todo = np.flatnonzero(~settled)
    base, target, near = [p[todo] for p in base], target[todo], [n[todo] for n in near]
    best_d = np.full(len(todo), np.inf)
    for d in itertools.product((0, -1, 1), repeat=3):
        cand = [np.clip(p + k, 0, 255) for p, k in zip(base, d, strict=True)]
        dist = sum((c - n) ** 2 for c, n in zip(cand, near, strict=True))
        take = (dist < best_d) & np.all(ycc_to_rgb(*cand) == target, -1)
        for p, c in zip(best, cand, strict=True):
            p[todo[take]] = c[take]
        best_d[take] = dist[take]
    return [p.reshape(rgb.shape[:2]) for p in best]


def _deconvolve(full: np.ndarray, sampling: int, shape: tuple[int, int], known: np.ndarray | None = None) -> np.ndarray:
    """Float chroma samples whose fancy upsampling comes near the plane `full` where it is `known`
    (float32: only the encoder's guess, which the decoder never computes)."""
    hs, vs = SAMPLINGS[sampling]
    if hs == 1:
        return full.astype(np.float32)
    h, w = shape
    grow = ((0, vs * h - full.shape[0]), (0, hs * w - full.shape[1]))
    pad = np.pad(full.astype(np.float32), grow, mode="edge")
    weight = np.ones_like(pad)
    if known is not None:
        weight = np.pad((known + UNKNOWN_WEIGHT).astype(np.float32), grow, mode="edge")

    def down(a: np.ndarray) -> np.ndarray:
        out = a[0::vs, 0::hs] + a[0::vs, 1::hs]
        return out + a[1::vs, 0::hs] + a[1::vs, 1::hs] if vs == 2 else out

    share = down(weight)
    c = down(pad * weight) / share
    for _ in range(DECONVOLVE_STEPS):
        c += down(weight * (pad - _upsample_float(c, hs, vs))) / share
    return c


def _smoothed(full: np.ndarray, sampling: int, shape: tuple[int, int], known: np.ndarray) -> np.ndarray:
    """A chroma plane as its samples would upsample it, unrounded."""
    hs, vs = SAMPLINGS[sampling]
    h, w = full.shape
    return _upsample_float(_deconvolve(full, sampling, shape, known), hs, vs)[:h, :w]


def _upsample_float(c: np.ndarray, hs: int, vs: int) -> np.ndarray:
    """The triangle filter of `upsample`, without its rounding."""
    if vs == 2:
        rows = np.empty((2 * c.shape[0], c.shape[1]), c.dtype)
        rows[0::2] = 0.75 * c
        rows[0::2, :][1:] += 0.25 * c[:-1]
        rows[0, :] += 0.25 * c[0]
        rows[1::2] = 0.75 * c
        rows[1::2, :][:-1] += 0.25 * c[1:]
        rows[-1, :] += 0.25 * c[-1]
        c = rows
    out = np.empty((c.shape[0], 2 * c.shape[1]), c.dtype)
    out[:, 0::2] = 0.75 * c
    out[:, 0::2][:, 1:] += 0.25 * c[:, :-1]
    out[:, 0] += 0.25 * c[:, 0]
    out[:, 1::2] = 0.75 * c
    out[:, 1::2][:, :-1] += 0.25 * c[:, 1:]
    out[:, -1] += 0.25 * c[:, -1]
    return out


_TABLES = np.array([[standard_quant(quality, kind) for quality in QUALITIES] for kind in range(2)])


def estimate_quant(
    d: np.ndarray, kind: int, hint: int | None = None, frequencies: int = B * B
) -> tuple[np.ndarray, int | None]:
    """Each frequency's quantizer step, and the libjpeg quality whose table it is, if one is.

    A step is the largest that most float coefficients d (n, 8, 8) of half a step or more sit on,
    with few clearly nonzero ones below half a step (255 where all are near 0). Where libjpeg's
    table for some quality matches enough settled steps (or else the quality `hint`, the luma
    table's, does not contradict them), that table is taken: settled steps off it are noise.
    Only the first `frequencies` in zigzag order are estimated. Steps left unsettled are 0.
    """
    q = np.zeros((B, B), np.int64)
    for v, u in _UV[:frequencies]:
        x = np.abs(d[:, v, u])
        x = x[x > 1.0]
        x = x[:: -(-len(x) // ESTIMATE_VALUES)] if len(x) else x
        q[v, u] = _largest_step(np.ascontiguousarray(x)) if len(x) else 255
    settled = (q > 0) & (q < 255)
    n = int(settled.sum())
    hits = list(np.count_nonzero(_TABLES[kind][:, settled] == q[settled], axis=1))
    quality = QUALITIES[int(np.argmax(hits))]
    if max(hits) >= max(STANDARD_HITS, STANDARD_SHARE * n):
        return standard_quant(quality, kind), quality
    if hint is not None:
        t, step = standard_quant(hint, kind)[settled], q[settled]
        agree = (t % step == 0) | (np.abs(t - step) <= np.maximum(1, t // 16))  # noise finds divisors
        if np.count_nonzero(agree) >= HINT_SHARE * n:
            return standard_quant(hint, kind), hint
    return q, None


@compiled
def _largest_step(x: np.ndarray) -> int:
    """The largest step (2 to 255) that most of the coefficients x (|x| > 1) of half a step or
    more sit on (within a quarter step, at most 1), with few over 2 (and a sixth of a step)
    below half a step; 0 where none does."""
    top = 0.0
    for a in range(x.size):
        top = max(top, x[a])
    for c in range(min(255, int(2 * top) + 1), 1, -1):
        step = float(c)
        big = on = lost = 0
        for a in range(x.size):
            if x[a] >= step / 2:
                big += 1
                on += abs(x[a] - step * np.rint(x[a] / step)) <= min(1.0, step / 4)
            elif x[a] > max(2.0, step / 6):
                lost += 1
        if big > 0 and on >= FIT * big and lost <= (1 - FIT) * big:
            return c
    return 0


def _filled(q: np.ndarray) -> np.ndarray:
    """Steps no test settled (0) taken as the largest settled one at lower frequencies in both
    directions (quantizer tables grow with frequency), or 1 where there is none."""
    settled = np.where((q > 0) & (q < 255), q, 0)
    below = np.maximum.accumulate(np.maximum.accumulate(settled, axis=0), axis=1)
    return np.where(q == 0, np.maximum(below, 1), q)


def _solve(target: np.ndarray, dct: np.ndarray, q: np.ndarray, free: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Quantized coefficients whose islow IDCT gives the target blocks (rows, cols, 8, 8; whose
    float DCT is `dct`), or comes near them; samples `free` (where the pixels were clipped, or past
    the plane's `size`) take whatever the coefficients give.

    Each step moves a block's coefficients by its error's rounded DCT, or where that rounds to
    nothing, by the best of a few moves (`_best_move`); each block keeps its best coefficients.
    A block reaching past the plane's edge starts from the search of `_edge_start`."""
    rows, cols = target.shape[:2]
    out = np.empty((rows * cols, B, B), np.int64)
    _solve_blocks(
        np.ascontiguousarray(target.reshape(-1, B, B), np.int64),
        np.ascontiguousarray(dct.reshape(-1, B, B), np.float64),
        np.ascontiguousarray(q, np.int64),
        np.ascontiguousarray(free.reshape(-1, B, B)),
        cols,
        *size,
        out,
    )
    return out.reshape(target.shape)


_SCALES = np.array(SCALES, np.float64)


@compiled
def _solve_blocks(
    target: np.ndarray,
    dct: np.ndarray,
    q: np.ndarray,
    free: np.ndarray,
    cols: int,
    h: int,
    w: int,
    best: np.ndarray,
) -> None:
    """`_solve` of blocks (n, 8, 8), `cols` to a row, of a plane of h x w samples, into best."""
    k, step = np.empty((B, B), np.int64), np.empty((B, B), np.int64)
    t, decoded = np.empty((B, B), np.int64), np.empty((B, B), np.int64)
    e, g = np.empty((B, B)), np.empty((B, B))
    for n in range(target.shape[0]):
        inside_rows, inside_cols = min(h - n // cols * B, B), min(w - n % cols * B, B)
        if inside_rows < B or inside_cols < B:
            _edge_start(target[n], free[n], q, inside_rows, inside_cols, k)
        else:
            for v in range(B):
                for u in range(B):
                    k[v, u] = np.int64(np.rint(dct[n, v, u] / q[v, u]))
        best_err = B * B + 1
        for _ in range(REFINE_STEPS):
            idct_block(k, q, decoded)
            err = 0
            for v in range(B):
                for u in range(B):
                    t[v, u] = decoded[v, u] if free[n, v, u] else target[n, v, u]
                    e[v, u] = t[v, u] - decoded[v, u]
                    err += e[v, u] != 0
            if err < best_err:
                best[n], best_err = k, err
            if err == 0:
                break
            _fdct(e, g)
            moved = False
            for v in range(B):
                for u in range(B):
                    g[v, u] /= q[v, u]
                    step[v, u] = np.int64(np.rint(g[v, u]))
                    moved |= step[v, u] != 0
            if not moved:
                _best_move(k, g, t, free[n], q, step)
                if not step.any():
                    break  # every later step would be this one again
            k += step


@compiled
def _edge_start(target: np.ndarray, free: np.ndarray, q: np.ndarray, rows: int, cols: int, k: np.ndarray) -> None:
    """Coefficients (into k) for a block whose samples past its first `rows` rows and `cols`
    columns lie outside the plane: a JPEG encoder filled those by repeating the last row and
    column inside, so its coefficients are the quantized DCT of such a block. The search moves
    the inside samples by a share of what their decoding misses (of the samples that are not
    free) and fills the rest from them again, keeping the coefficients that miss fewest."""
    x, dct, decoded = np.empty((B, B)), np.empty((B, B)), np.empty((B, B), np.int64)
    trial = np.empty((B, B), np.int64)
    for v in range(B):
        for u in range(B):
            x[v, u] = target[min(v, rows - 1), min(u, cols - 1)] - 128.0
    best_err = B * B + 1
    for _ in range(EDGE_STEPS):
        _fdct(x, dct)
        for v in range(B):
            for u in range(B):
                trial[v, u] = np.int64(np.rint(dct[v, u] / q[v, u]))
        idct_block(trial, q, decoded)
        err = 0
        for v in range(rows):
            for u in range(cols):
                if not free[v, u] and decoded[v, u] != target[v, u]:
                    err += 1
                    x[v, u] += EDGE_STEP * (target[v, u] - decoded[v, u])
        if err < best_err:
            k[:], best_err = trial, err
        if err == 0:
            return
        for v in range(B):
            for u in range(B):
                if v >= rows or u >= cols:
                    x[v, u] = x[min(v, rows - 1), min(u, cols - 1)]


@compiled
def _best_move(k: np.ndarray, g: np.ndarray, t: np.ndarray, free: np.ndarray, q: np.ndarray, step: np.ndarray) -> None:
    """For a block whose error rounds to no step: the move (into step) that leaves the least
    absolute error of its samples that are not free, of a step on one of the MOVES coefficients
    the error leans on most (the first in raster order on a tie) or the error's DCT scaled up."""
    order = np.argsort(-np.abs(g.ravel()), kind="mergesort")[:MOVES]
    trial, decoded = np.empty((B, B), np.int64), np.empty((B, B), np.int64)
    best_cost = -1
    for m in range(MOVES + len(_SCALES)):
        for v in range(B):
            for u in range(B):
                if m < MOVES:
                    z = order[m]
                    trial[v, u] = np.int64(np.sign(g[v, u])) if v * B + u == z else 0
                else:
                    trial[v, u] = np.int64(np.rint(_SCALES[m - MOVES] * g[v, u]))
        idct_block(k + trial, q, decoded)
        cost = 0
        for v in range(B):
            for u in range(B):
                if not free[v, u]:
                    cost += abs(t[v, u] - decoded[v, u])
        if best_cost < 0 or cost < best_cost:
            best_cost = cost
            step[:] = trial
            if cost == 0:
                return


_DCT_T = np.ascontiguousarray(_DCT.T)


@compiled
def _fdct(e: np.ndarray, out: np.ndarray) -> None:
    """`fdct` of one block e into out."""
    rows = np.empty((B, B))
    _times(_DCT, e, rows)
    _times(rows, _DCT_T, out)


@compiled
def _times(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """The matrix product a @ b into out, each sum in order."""
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            total = 0.0
            for m in range(a.shape[1]):
                total += a[i, m] * b[m, j]
            out[i, j] = total


def _clipped(unknown: np.ndarray, sampling: int, shapes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """Each plane's samples the pixels say little about, as blocks, from the pixels that say
    little (clipped to 0 or 255, or outside the image): those and the samples past the canvas's
    edge; for chroma the sample under such a pixel and those beside that."""
    out = [to_blocks(unknown, *shapes[0][2:], fill=True)]
    if len(shapes) > 1:
        hs, vs = SAMPLINGS[sampling]
        sh, sw, rows, cols = shapes[1]
        s = np.pad(unknown, ((0, vs * sh - unknown.shape[0]), (0, hs * sw - unknown.shape[1])), mode="edge")
        s = s.reshape(sh, vs, sw, hs).any(axis=(1, 3))
        if hs > 1:
            s = s | shifted(s, 1, -1) | shifted(s, 1, 1) | shifted(s, 0, -1) | shifted(s, 0, 1)
        out += [to_blocks(s, rows, cols, fill=True)] * 2
    return out


class _Targets(NamedTuple):
    """What the pixels say of a JPEG under one sampling and offset: each plane's target blocks,
    their float DCT (unquantized coefficients) and its free samples."""

    targets: list[np.ndarray]
    dct: list[np.ndarray]
    free: list[np.ndarray]
    sampling: int
    offset: tuple[int, int]
    sizes: list[tuple[int, int]]  # each plane's samples (height, width) inside its whole blocks

    @property
    def clean(self) -> list[np.ndarray]:
        """Each plane's coefficients (n, 8, 8) of its clean blocks, that estimate the steps."""
        return [_clean(d, f) for d, f in zip(self.dct, self.free, strict=True)]


def _targets(rgb: np.ndarray, sampling: int, offset: tuple[int, int]) -> _Targets:
    """The target blocks of an (H, W, C) image whose top left pixel lay at `offset` in a JPEG."""
    oy, ox = offset
    canvas = np.pad(rgb, ((oy, 0), (ox, 0), (0, 0)), mode="edge")
    h, w, channels = canvas.shape
    unknown = np.any((canvas == 0) | (canvas == 255), -1)
    unknown[:oy] = unknown[:, :ox] = True
    shapes = plane_shapes(h, w, channels, sampling)
    free = _clipped(unknown, sampling, shapes)
    if channels == 1:
        planes = [canvas[..., 0].astype(np.int64)]
    else:
        near = _float_planes(canvas)
        if sampling:
            near[1:] = [_smoothed(p, sampling, shapes[1][:2], ~unknown) for p in near[1:]]
        planes = _integer_planes(canvas, near)
    targets = [to_blocks(planes[0], *shapes[0][2:])]
    for p, (sh, sw, rows, cols) in zip(planes[1:], shapes[1:], strict=True):
        c = np.clip(np.round(_deconvolve(p, sampling, (sh, sw), ~unknown)), 0, 255).astype(np.int64)
        targets.append(to_blocks(c, rows, cols))
    sizes = [(sh, sw) for sh, sw, _, _ in shapes]
    return _Targets(targets, [fdct(t - 128.0) for t in targets], free, sampling, offset, sizes)


def _raw_quant(t: _Targets, luma: np.ndarray | None = None) -> np.ndarray:
    """The quantizer tables (planes, 8, 8) of prepared targets, unsettled steps 0: the luma one
    given or estimated, the two chroma planes sharing one, as libjpeg's do."""
    quality = None
    if luma is None:
        luma, quality = estimate_quant(t.clean[0], 0)
    quant = [luma]
    if len(t.targets) == 3:
        quant += [estimate_quant(np.concatenate(t.clean[1:]), 1, quality)[0]] * 2
    return np.stack(quant)


def _complete(raw: np.ndarray, filled: bool = True) -> np.ndarray:
    """Tables with their unsettled steps `_filled`, or 1 where not `filled` (the trials that
    choose a sampling and offset: filled steps blur the difference between right and wrong ones)."""
    return np.stack([_filled(q) for q in raw]) if filled else np.maximum(raw, 1)


def _fit(t: _Targets, quant: np.ndarray) -> JpegModel:
    """The model of prepared targets under these tables: the coefficients that meet the targets."""
    coefs = [_solve(*a) for a in zip(t.targets, t.dct, quant, t.free, t.sizes, strict=True)]
    return JpegModel(t.sampling, quant, coefs, t.offset)


def fit(rgb: np.ndarray, sampling: int, luma: np.ndarray | None = None, offset: tuple[int, int] = (0, 0)) -> JpegModel:
    """The JPEG behind an (H, W, C) image whose top left pixel lay at `offset` in it, for one
    chroma sampling (and the luma quantizer table, if given)."""
    t = _targets(rgb, sampling, offset)
    return _fit(t, _complete(_raw_quant(t, luma)))


def _clean(d: np.ndarray, free: np.ndarray) -> np.ndarray:
    """The coefficients (n, 8, 8) of blocks with no free sample, unless there are too few of those."""
    clean = ~free.any(axis=(-2, -1)).ravel()
    d = d.reshape(-1, B, B)
    return d[clean] if clean.sum() >= CLEAN_BLOCKS else d


def central_crop(rgb: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The image's central CROP x CROP pixels, from a row and column on the 16x16 grid of MCUs of
    a JPEG in which the image's top left lay at `offset`."""
    h, w = rgb.shape[:2]
    y = max(0, (h - CROP) // 2 + offset[0]) // 16 * 16 - offset[0]
    x = max(0, (w - CROP) // 2 + offset[1]) // 16 * 16 - offset[1]
    y, x = y + 16 * (y < 0), x + 16 * (x < 0)
    return rgb[y : y + CROP, x : x + CROP]


def _phases(sampling: int) -> list[tuple[int, int]]:
    """The offsets beside a grid's own (mod 8) that the MCUs of a sampling tell apart."""
    hs, vs = SAMPLINGS[sampling]
    return [(8 * a, 8 * b) for a in range(vs) for b in range(hs)]


def _luma_steps(crop: np.ndarray, frequencies: int) -> tuple[np.ndarray, int | None]:
    """`estimate_quant` of a crop's luma on the 8x8 grid from its top left, unsettled steps 0."""
    luma = crop[..., 0] if crop.shape[2] == 1 else np.round(_float_planes(crop)[0])
    rows, cols = -(-crop.shape[0] // B), -(-crop.shape[1] // B)
    unknown = np.any((crop == 0) | (crop == 255), -1)
    free = _clipped(unknown, 0, [(*crop.shape[:2], rows, cols)])[0]
    return estimate_quant(_clean(fdct(to_blocks(luma, rows, cols) - 128.0), free), 0, None, frequencies)


def _shows_steps(crop: np.ndarray) -> bool:
    """Whether a crop's luma, on the 8x8 grid from its top left, sits on a JPEG's quantizer steps."""
    q, quality = _luma_steps(crop, CHECKED)
    return quality is not None or np.count_nonzero((q > 1) & (q < 255)) >= MIN_STEPS


def choose(
    rgb: np.ndarray, progress: Callable[[int, int], None] | None = None
) -> tuple[JpegModel, np.ndarray, float] | None:
    """`fit` with the offset and chroma sampling that code a central crop smallest, and with the
    dividing tables where they code the image smaller; with that crop and its ideal bits
    (side information included). None where no crop's luma shows a JPEG's quantizer steps, on
    the 8x8 grid from the image's top left or on the one `linear.block_grid` finds.
    `progress(done, 4)` is called after each of three stages (the caller's coding is the fourth)."""
    h, w, channels = rgb.shape
    if min(h, w) < MIN_SIDE:
        return None
    gy, gx = block_grid(rgb)
    grids = [(0, 0)] + ([((B - gy) % B, (B - gx) % B)] if (gy, gx) != (0, 0) else [])
    grids = [g for g in grids if _shows_steps(central_crop(rgb, g))]
    if not grids:
        return None
    samplings = range(len(SAMPLINGS)) if channels == 3 else [0]
    tries = [((g[0] + py, g[1] + px), s) for g in grids for s in samplings for py, px in _phases(s)]
    small = h * w <= CROP * CROP  # the image itself stands for the crop
    bits, fits = [], []
    for offset, s in tries:
        crop = rgb if small else central_crop(rgb, offset)
        t = _targets(crop, s, offset if small else (0, 0))
        raw = _raw_quant(t)
        fits.append((crop, t, raw, _fit(t, _complete(raw, filled=False))))
        bits.append(_ideal(crop, fits[-1][3]) / crop.size)
    if h * w >= DIVIDED_FROM and not any(_libjpegs(raw[0]) for _, _, raw, _ in fits):
        # A JPEG saved again fits poorly on the steps estimated at every offset, and shows no
        # libjpeg table at any: the dividing tables tell the right offset.
        for k, (crop, t, raw, _) in enumerate(fits):
            divisor = _dividing_tables(raw[0], len(raw))
            other = _fit(t, divisor) if divisor is not None else None
            if other is not None and (b := _ideal(crop, other) / crop.size) < bits[k]:
                fits[k], bits[k] = (crop, t, divisor, other), b
    best = int(np.argmin(bits))
    offset, sampling = tries[best]
    crop, crop_targets, crop_raw, crop_ones = fits[best]
    crop_quant = _complete(crop_raw)
    crop_model = crop_ones if np.array_equal(crop_quant, crop_ones.quant) else _fit(crop_targets, crop_quant)
    crop_bits = encode(crop, crop_model)[1]
    if progress:
        progress(1, 4)
    whole = crop_targets if small else _targets(rgb, sampling, offset)
    raw = crop_raw if small else _raw_quant(whole)
    quant, ones = _complete(raw), _complete(raw, filled=False)
    model = crop_model if small else _fit(whole, quant)
    if not np.array_equal(ones, quant):
        other = _fit(whole, ones)
        if _ideal(rgb, other) < _ideal(rgb, model):
            model = other  # unsettled steps of 1 code smaller than filled ones
    if progress:
        progress(2, 4)
    divisor = _dividing_tables(raw[0], len(raw))
    if divisor is not None:
        other = _fit(whole, divisor)
        if _ideal(rgb, other) < _ideal(rgb, model):
            model = other
    if progress:
        progress(3, 4)
    return _polished(rgb, model), crop, crop_bits


def _polished(rgb: np.ndarray, model: JpegModel) -> JpegModel:
    """The model with each block whose decoding misses pixels moved, one coefficient by one step
    at a time, while that misses fewer (POLISH_STEPS at most; none where the model misses over
    POLISH_SHARE of the pixels: a poor fit, slow to polish): the search met each plane's targets,
    but those guess at which of the Y, Cb, Cr that give a pixel the JPEG held. Luma blocks move
    under the chroma as it upsamples (in 4:4:4 and grey every plane), then subsampled chroma
    blocks (`_polish_chroma`)."""
    h, w, channels = rgb.shape
    oy, ox = model.offset
    rows, cols = model.coefs[0].shape[:2]
    grid = ((oy, rows * B - h - oy), (ox, cols * B - w - ox))
    px = np.pad(rgb, (*grid, (0, 0)), mode="edge")
    care = np.pad(np.ones((h, w), bool), grid)
    upsampled = channels == 3 and model.sampling != 0
    # The chroma each luma block sees, as it upsamples (where it does; read nowhere else).
    chroma = [np.zeros((0, B, B), np.int64)] * 2
    if upsampled:
        ups = (upsample(p, model.sampling)[: rows * B, : cols * B] for p in samples(model, h, w)[1:])
        chroma = [np.ascontiguousarray(to_blocks(up, rows, cols).reshape(-1, B, B), np.int64) for up in ups]
    moved = 1 if upsampled else len(model.coefs)
    k = np.stack([c.reshape(-1, B, B) for c in model.coefs[:moved]]).astype(np.int64)
    fits = _polish_blocks(
        k,
        np.ascontiguousarray(model.quant[:moved], np.int64),
        *chroma,
        np.ascontiguousarray(px.reshape(rows, B, cols, B, channels).swapaxes(1, 2).reshape(-1, B, B, channels)),
        np.ascontiguousarray(to_blocks(care, rows, cols).reshape(-1, B, B)),
        upsampled,
    )
    coefs = [c.reshape(rows, cols, B, B) for c in k] + list(model.coefs[moved:])
    polished = JpegModel(model.sampling, model.quant, coefs, model.offset)
    if not fits or not upsampled:
        return polished
    # Then the chroma blocks, each judged on the pixels its samples reach as they upsample.
    planes = samples(polished, h, w)
    kc = np.stack([c.reshape(-1, B, B) for c in coefs[1:]]).astype(np.int64)
    hs, vs = SAMPLINGS[model.sampling]
    _polish_chroma(
        kc,
        np.ascontiguousarray(model.quant[1:], np.int64),
        np.stack(planes[1:]).astype(np.int64),
        planes[0].astype(np.int64),
        np.ascontiguousarray(px[: h + oy, : w + ox]),
        np.ascontiguousarray(care[: h + oy, : w + ox]),
        coefs[1].shape[1],
        hs,
        vs,
    )
    coefs = coefs[:1] + [c.reshape(coefs[1].shape) for c in kc]
    return JpegModel(model.sampling, model.quant, coefs, model.offset)


@compiled
def _polish_chroma(
    k: np.ndarray,
    q: np.ndarray,
    planes: np.ndarray,
    luma: np.ndarray,
    px: np.ndarray,
    care: np.ndarray,
    cols: int,
    hs: int,
    vs: int,
) -> None:
    """`_polished`'s moves of subsampled chroma coefficients k (2, n, 8, 8), `cols` blocks to a
    row, whose decoded samples are planes (2, rows, columns): each block is judged on the
    pixels px (where `care`) its samples reach through the upsampling, under the decoded luma."""
    trial, saved = np.empty((B, B), np.int64), np.empty((B, B), np.int64)
    h, w = luma.shape
    ch, cw = planes.shape[1:]
    for n in range(k.shape[1]):
        i0, j0 = n // cols * B, n % cols * B
        if i0 >= ch or j0 >= cw:
            continue
        window = (max(vs * i0 - 1, 0), min(vs * (i0 + B) + 1, h), max(hs * j0 - 1, 0), min(hs * (j0 + B) + 1, w))
        misses = _window_misses(planes, luma, px, care, window, hs, vs)
        for _ in range(POLISH_STEPS):
            if misses == 0:
                break
            best, move = misses, -1
            for p in range(2):
                for z in range(B * B):
                    for d in (-1, 1):
                        _moved(k[p, n], q[p], z, d, trial, False)
                        _swap_block(planes[p], trial, saved, i0, j0)
                        m = _window_misses(planes, luma, px, care, window, hs, vs)
                        _swap_block(planes[p], saved, trial, i0, j0)
                        if m < best:
                            best, move = m, (p * B * B + z) * 2 + (d > 0)
            if move < 0:
                break
            p = move // 2 // (B * B)
            _moved(k[p, n], q[p], move // 2 % (B * B), 1 if move % 2 else -1, trial, True)
            _swap_block(planes[p], trial, saved, i0, j0)
            misses = best


@compiled
def _swap_block(plane: np.ndarray, new: np.ndarray, old: np.ndarray, i0: int, j0: int) -> None:
    """Put block `new` into the plane at (i0, j0) (as far as the plane reaches), its samples there
    before into `old`."""
    for a in range(min(B, plane.shape[0] - i0)):
        for b in range(min(B, plane.shape[1] - j0)):
            old[a, b] = plane[i0 + a, j0 + b]
            plane[i0 + a, j0 + b] = new[a, b]


@compiled
def _window_misses(
    planes: np.ndarray, luma: np.ndarray, px: np.ndarray, care: np.ndarray, window: tuple, hs: int, vs: int
) -> int:
    """The pixels (where `care`) of a window (rows y0..y1, columns x0..x1) that luma and the
    chroma planes, upsampled, miss."""
    y0, y1, x0, x1 = window
    out = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            if care[y, x]:
                cb, cr = upsampled_at(planes[0], y, x, hs, vs), upsampled_at(planes[1], y, x, hs, vs)
                r, g, b = rgb_one(luma[y, x], cb, cr)
                out += r != px[y, x, 0] or g != px[y, x, 1] or b != px[y, x, 2]
    return out


@compiled
def _polish_blocks(
    k: np.ndarray, q: np.ndarray, cb: np.ndarray, cr: np.ndarray, px: np.ndarray, care: np.ndarray, upsampled: bool
) -> bool:
    """`_polished`'s moves of coefficients k (planes moved, n, 8, 8) whose blocks cover pixels px
    (n, 8, 8, C) where `care`: luma alone under chroma cb, cr as it upsamples (`upsampled`), or
    every plane (4:4:4 and grey); none where the blocks miss over POLISH_SHARE of the pixels
    (then False)."""
    planes = k.shape[0]
    dec = np.zeros((3, B, B), np.int64)
    trial = np.empty((B, B), np.int64)
    missed = np.zeros(k.shape[1], np.int64)
    for n in range(k.shape[1]):
        for p in range(planes):
            idct_block(k[p, n], q[p], dec[p])
        if upsampled:
            dec[1], dec[2] = cb[n], cr[n]
        missed[n] = _misses(dec, -1, trial, px[n], care[n])
    if missed.sum() > POLISH_SHARE * np.count_nonzero(care):
        return False
    for n in np.flatnonzero(missed):
        for p in range(planes):
            idct_block(k[p, n], q[p], dec[p])
        if upsampled:
            dec[1], dec[2] = cb[n], cr[n]
        misses = missed[n]
        for _ in range(POLISH_STEPS):
            if misses == 0:
                break
            best, move = misses, -1
            for p in range(planes):
                for z in range(B * B):
                    for d in (-1, 1):
                        _moved(k[p, n], q[p], z, d, trial, False)
                        m = _misses(dec, p, trial, px[n], care[n])
                        if m < best:
                            best, move = m, (p * B * B + z) * 2 + (d > 0)
            if move < 0:
                break
            p = move // 2 // (B * B)
            _moved(k[p, n], q[p], move // 2 % (B * B), 1 if move % 2 else -1, dec[p], True)
            misses = best
    return True


@compiled
def _moved(k: np.ndarray, q: np.ndarray, z: int, d: int, out: np.ndarray, keep: bool) -> None:
    """The block of coefficients k (8, 8) with coefficient z (raster order) moved by d, decoded
    into out; the move kept in k where `keep`."""
    k[z // B, z % B] += d
    idct_block(k, q, out)
    if not keep:
        k[z // B, z % B] -= d


@compiled
def _misses(dec: np.ndarray, p: int, trial: np.ndarray, px: np.ndarray, care: np.ndarray) -> int:
    """The pixels (where `care`) that planes dec (Y, Cb, Cr) miss, with plane p's block `trial` instead."""
    out = 0
    for a in range(B):
        for b in range(B):
            if not care[a, b]:
                continue
            y = trial[a, b] if p == 0 else dec[0, a, b]
            if px.shape[2] == 1:
                out += y != px[a, b, 0]
                continue
            cb = trial[a, b] if p == 1 else dec[1, a, b]
            cr = trial[a, b] if p == 2 else dec[2, a, b]
            r, g, bl = rgb_one(y, cb, cr)
            out += r != px[a, b, 0] or g != px[a, b, 1] or bl != px[a, b, 2]
    return out


def _libjpegs(q: np.ndarray) -> bool:
    """Whether luma steps q are one of libjpeg's tables."""
    return any(np.array_equal(t, q) for t in _TABLES[0])


def _dividing_tables(q: np.ndarray, planes: int) -> np.ndarray | None:
    """libjpeg's tables (planes, 8, 8) of the lowest quality whose luma table divides most of the
    settled luma steps q (0: unsettled), where q is no libjpeg table itself: a JPEG saved again at
    a higher quality from one of lower quality has its coefficients on multiples of its own
    steps, but mostly on those near the first one's steps, which the estimate then finds."""
    settled = (q > 1) & (q < 255)
    if _libjpegs(q) or settled.sum() < STANDARD_HITS:
        return None
    # Tables of ever higher quality divide ever more steps (quality 100's, all 1s, every one).
    for luma, chroma in zip(*_TABLES):
        if np.count_nonzero(q[settled] % luma[settled] == 0) >= STANDARD_SHARE * settled.sum():
            return np.stack([luma] + [chroma] * (planes - 1))
    return None


def _raw(v: np.ndarray, cats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bits below a nonzero value's leading 1 and its sign, and their count's power of two."""
    nz = cats > 0
    mag = np.abs(v[nz])
    size = np.left_shift(1, cats[nz])
    return ((mag - (size >> 1)) * 2 + (v[nz] < 0)).astype(np.int32), size.astype(np.int32)


def _unraw(raw: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """The values `_raw` split (zero where the category is 0)."""
    out = np.zeros(cats.shape, np.int64)
    nz = cats > 0
    mag = (raw >> 1) + np.left_shift(1, cats[nz] - 1)
    out[nz] = np.where(raw & 1, -mag, mag)
    return out


def _weights(counts: np.ndarray) -> np.ndarray:
    """Integer weights (contexts, CATEGORIES) summing to _TOTAL, each at least FLOOR, from counts."""
    c = counts.astype(np.int64)
    free = _TOTAL - CATEGORIES * FLOOR
    sums = np.maximum(c.sum(1, keepdims=True), 1)
    w = FLOOR + (c * free) // sums
    w[np.arange(len(w)), np.argmax(c, axis=1)] += _TOTAL - w.sum(1)
    return w.astype(np.float64)


def _neighbour_sum(a: np.ndarray) -> np.ndarray:
    """Each block's left, upper, right and lower neighbours' values summed (0 outside)."""
    out = np.zeros_like(a)
    out[1:] += a[:-1]
    out[:-1] += a[1:]
    out[:, 1:] += a[:, :-1]
    out[:, :-1] += a[:, 1:]
    return out


def _bucket(a: np.ndarray) -> np.ndarray:
    return np.minimum(bit_lengths(a), BUCKETS - 1)


def _ac_context(k: np.ndarray, f: int, kind: int) -> np.ndarray:
    """The contexts of every block's zigzag coefficient f from lower frequencies: the coefficients
    left and above it in the same block (twice) and in the four neighbouring blocks."""
    v, u = _UV[f]
    near = [k[:, :, v, u - 1]] if u else []
    near += [k[:, :, v - 1, u]] if v else []
    a = sum(np.abs(x) for x in near)
    act = 4 * a + _neighbour_sum(a)
    band = int(np.searchsorted(BANDS, f, side="right")) - 1
    return (kind * (len(BANDS) - 1) + band) * BUCKETS + _bucket((act + 2) >> 2)


def _dc_prediction(dc: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The median predictions of DCs at blocks (i, j) from their decoded left, upper and upper-left
    neighbours, and the activity that selects their context."""
    left = np.where(j > 0, dc[i, j - 1], np.where(i > 0, dc[i - 1, j], 0))
    up = np.where(i > 0, dc[i - 1, j], left)
    corner = np.where((i > 0) & (j > 0), dc[i - 1, j - 1], up)
    med = np.maximum(np.minimum(left, up), np.minimum(np.maximum(left, up), left + up - corner))
    return med, np.abs(left - corner) + np.abs(up - corner)


class _Steps:
    """The symbols of a stream in the order the decoder meets them: categories with their
    contexts, then the raw bits of the nonzero ones."""

    def __init__(self) -> None:
        self.cats: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # values, contexts, categories

    def add(self, values: np.ndarray, contexts: np.ndarray) -> None:
        self.add_runs(values, contexts, [values.size])

    def add_runs(self, values: np.ndarray, contexts: np.ndarray, sizes: list[int]) -> None:
        """Values and their contexts (in order) as steps of these sizes, each as `add` adds it."""
        v = values.ravel().astype(np.int64)
        cats = bit_lengths(v)
        if (cats >= CATEGORIES).any():
            raise ValueError("a value too wide for the JPEG model")
        c = contexts.ravel().astype(np.int64)
        ends = np.cumsum(sizes)
        for a, b in zip(ends - sizes, ends):
            self.cats.append((v[a:b], c[a:b], cats[a:b]))

    def _symbols(self) -> tuple[np.ndarray, np.ndarray]:
        """Every category's context and the category, in order."""
        return np.concatenate([c for _, c, _ in self.cats]), np.concatenate([k for _, _, k in self.cats])

    def counts(self, symbols: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """How often each category occurs in each context (of `_symbols`, if given)."""
        c, cats = self._symbols() if symbols is None else symbols
        return np.bincount(c * CATEGORIES + cats, minlength=CONTEXTS * CATEGORIES).reshape(CONTEXTS, CATEGORIES)

    def ideal(self) -> float:
        """The ideal bits of every symbol under the counts' weights (side information aside)."""
        rows, cats = self._symbols()
        weights = _weights(self.counts((rows, cats)))
        return float(np.sum(PRECISION - np.log2(weights[rows, cats])) + cats.sum())

    def push(self, coder, weights: np.ndarray) -> float:
        """Push every step in reverse; the ideal bits."""
        bits = 0.0
        for v, c, cats in reversed(self.cats):
            raw, size = _raw(v, cats)
            if len(raw):
                coder.encode_reverse(raw, _UNIFORM, size)
            rows = weights[c]
            coder.encode_reverse(cats.astype(np.int32), _CATEGORICAL, rows)
            bits += float(np.sum(PRECISION - np.log2(rows[np.arange(len(cats)), cats])) + np.log2(size).sum())
        return bits


def _pop(coder, weights: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """The values pushed with these contexts."""
    c = contexts.ravel()
    cats = coder.decode(_CATEGORICAL, weights[c]).astype(np.int64)
    nz = cats > 0
    raw = coder.decode(_UNIFORM, np.left_shift(1, cats[nz]).astype(np.int32)).astype(np.int64) if nz.any() else cats[:0]
    return _unraw(raw, cats).reshape(contexts.shape)


def _plane_steps(steps: _Steps, k: np.ndarray, kind: int) -> None:
    """The DCs by wavefronts (median prediction) and then each AC frequency in zigzag order, each
    wavefront and frequency a step: what the decoder reads one at a time (`_dc_prediction`,
    `_ac_context`), found for the whole plane at once."""
    dc = k[:, :, 0, 0]
    rows, cols = dc.shape
    fronts = diagonals(rows, cols)
    i, j = np.concatenate([i for i, _ in fronts]), np.concatenate([j for _, j in fronts])
    med, act = _dc_prediction(dc, i, j)
    steps.add_runs(dc[i, j] - med, AC_CONTEXTS + kind * BUCKETS + _bucket(act), [len(i) for i, _ in fronts])
    steps.add_runs(_acs(k), _ac_contexts(k, kind), [rows * cols] * (B * B - 1))


_AC_V, _AC_U = np.array(_UV[1:]).T  # each AC frequency's row and column, in zigzag order
_AC_BANDS = np.searchsorted(BANDS, np.arange(1, B * B), side="right") - 1


def _acs(k: np.ndarray) -> np.ndarray:
    """Each AC frequency's coefficients (63, rows, cols) of blocks k (rows, cols, 8, 8), in zigzag order."""
    return k[:, :, _AC_V, _AC_U].transpose(2, 0, 1)


def _ac_contexts(k: np.ndarray, kind: int) -> np.ndarray:
    """`_ac_context` of every AC frequency (63, rows, cols), in zigzag order."""
    near = np.zeros(k.shape, np.int64)
    near[..., 1:] += np.abs(k[..., :-1])  # the coefficient on the left
    near[..., 1:, :] += np.abs(k[..., :-1, :])  # and above
    a = _acs(near)
    act = 4 * a
    act[:, 1:] += a[:, :-1]
    act[:, :-1] += a[:, 1:]
    act[:, :, 1:] += a[:, :, :-1]
    act[:, :, :-1] += a[:, :, 1:]
    band = (kind * (len(BANDS) - 1) + _AC_BANDS) * BUCKETS
    return band[:, None, None] + _bucket((act + 2) >> 2)


def _residual_contexts(loudness: np.ndarray, channels: int) -> np.ndarray:
    """The contexts of the differences of pixels (n, channels) by their block's loudness class."""
    base = AC_CONTEXTS + DC_CONTEXTS + np.arange(channels) * LOUDNESS
    return base[None, :] + np.minimum(loudness, LOUDNESS)[:, None] - 1


def _loudness(residual: np.ndarray) -> np.ndarray:
    """Each 8x8 block's bit length of its largest difference (0: none)."""
    h, w, c = residual.shape
    rows, cols = -(-h // B), -(-w // B)
    r = np.pad(np.abs(residual).max(-1), ((0, rows * B - h), (0, cols * B - w)))
    return bit_lengths(r.reshape(rows, B, cols, B).max(axis=(1, 3)))


def _in_blocks(bad: np.ndarray, h: int, w: int) -> np.ndarray:
    """A pixel mask of the flagged blocks."""
    return np.repeat(np.repeat(bad, B, 0), B, 1)[:h, :w]


def _ideal(rgb: np.ndarray, model: JpegModel) -> float:
    """`encode`'s ideal bits without its side information, without coding: to compare models."""
    return _steps(rgb, model).ideal()


def encode(rgb: np.ndarray, model: JpegModel) -> tuple[bytes, float]:
    """The image as one ANS stream with the model; the ideal bits."""
    steps = _steps(rgb, model)
    counts = steps.counts()
    coder = constriction.stream.stack.AnsCoder()
    bits = steps.push(coder, _weights(counts))
    _push_side(coder, model, counts)
    side = constriction.stream.stack.AnsCoder()
    _push_side(side, model, counts)
    return coder.get_compressed().astype("<u4").tobytes(), bits + 32.0 * side.num_words()


def _steps(rgb: np.ndarray, model: JpegModel) -> _Steps:
    """Every symbol of the image under the model, in the decoder's order."""
    h, w, channels = rgb.shape
    steps = _Steps()
    for i, k in enumerate(model.coefs):
        _plane_steps(steps, k, min(i, 1))
    residual = rgb.astype(np.int64) - reconstruct(model, h, w)
    loud = _loudness(residual)
    bad = loud > 0
    steps.add(bad.astype(np.int64), np.full(bad.shape, FLAG_CONTEXT))
    steps.add(loud[bad] - 1, np.full(int(bad.sum()), LOUDNESS_CONTEXT))
    mask = _in_blocks(bad, h, w)
    steps.add(residual[mask], _residual_contexts(_in_blocks(loud, h, w)[mask], channels))
    return steps


def _push_side(coder, model: JpegModel, counts: np.ndarray) -> None:
    """Push the category counts, the quantization tables, the offset and the sampling."""
    push_ints(coder, counts.ravel())
    coder.encode_reverse((model.quant.ravel() - 1).astype(np.int32), _QUANT)
    coder.encode_reverse(np.array(model.offset, np.int32), _OFFSETS)
    coder.encode_reverse(np.array([model.sampling], np.int32), _SAMPLING_CODES)


def decode(
    data: bytes, h: int, w: int, channels: int, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """The (H, W, C) uint8 image from a stream made by `encode`."""
    if len(data) % 4:
        raise FormatError("corrupted payload: ANS stream length is not a multiple of 4")
    if h * w * MIN_BITS > 8 * len(data) + 64:  # a coefficient per luma sample at least
        raise FormatError(f"corrupted .nfc file: {len(data)} bytes cannot hold a {w}x{h} image")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
    sampling = int(coder.decode(_SAMPLING_CODES, 1)[0])
    oy, ox = (int(v) for v in coder.decode(_OFFSETS, 2))
    quant = coder.decode(_QUANT, 64 * (3 if channels == 3 else 1)).astype(np.int64).reshape(-1, B, B) + 1
    weights = _weights(pop_ints(coder, CONTEXTS * CATEGORIES).reshape(CONTEXTS, CATEGORIES))
    coefs = []
    shapes = plane_shapes(h + oy, w + ox, channels, sampling)
    for i, (_, _, rows, cols) in enumerate(shapes):
        kind = min(i, 1)
        k = np.zeros((rows, cols, B, B), np.int64)
        dc = k[:, :, 0, 0]
        for bi, bj in diagonals(rows, cols):
            med, act = _dc_prediction(dc, bi, bj)
            # (clipped so that a damaged file keeps islow's sums exact: no JPEG's DC comes near)
            dc[bi, bj] = np.clip(med + _pop(coder, weights, AC_CONTEXTS + kind * BUCKETS + _bucket(act)), -LIMIT, LIMIT)
        k[:, :, 0, 0] = dc
        for f in range(1, B * B):
            v, u = _UV[f]
            k[:, :, v, u] = _pop(coder, weights, _ac_context(k, f, kind))
        coefs.append(k)
        if progress:
            progress(i + 1, len(shapes) + 1)
    out = reconstruct(JpegModel(sampling, quant, coefs, (oy, ox)), h, w).astype(np.int64)
    rows, cols = -(-h // B), -(-w // B)
    bad = _pop(coder, weights, np.full((rows, cols), FLAG_CONTEXT)) != 0
    loud = np.zeros((rows, cols), np.int64)
    loud[bad] = np.maximum(_pop(coder, weights, np.full(int(bad.sum()), LOUDNESS_CONTEXT)), 0) + 1
    mask = _in_blocks(bad, h, w)
    out[mask] += _pop(coder, weights, _residual_contexts(_in_blocks(loud, h, w)[mask], channels))
    if progress:
        progress(len(shapes) + 1, len(shapes) + 1)
    return out.astype(np.uint8)
