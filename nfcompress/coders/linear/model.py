"""The per-image linear model: each sub-pixel predicted from decoded neighbours by weights fitted
to the image (least squares), coded under a discretized logistic whose scale follows the local
activity.

Its second scheme (format version 7) adds the median predictor as a feature, reads red's and
blue's texture from their difference to green, fits the weights again with each pixel weighted
by its context's precision, moves each prediction by fitted feedback from the first stage's
errors around it, and gives the median's value a spike: a share of the probability, fitted per
context, that smooth planes earn by meeting that value exactly.

Its third scheme (format version 8) finds the grid of 8x8 blocks a JPEG once left in the image
and gives the pixels on a block's first row and column weights of their own (there a neighbour
lies across the block edge and tells less); adds a local prediction (nfcompress.coders.linear.local), fitted
around each pixel to its causal window, as one more feature; and on images under 128x128 reads
fewer neighbours with coarser weights, whose side information costs more than it saves there.

The flow models thumbnails best; on large photos its fixed weights meet noise, blur and JPEG
history they were not trained on, and a model fitted to the image itself codes smaller. The
codec keeps whichever file is smaller. After the fit everything is integer arithmetic, `det_exp`
or the local predictor's elementwise IEEE operations, so files decode alike on every machine.

Decoding order: channel by channel; within a channel, wavefronts t = 2i + j (row i, column j)
in increasing t, each in increasing i. Every neighbour a prediction reads lies on an earlier
wavefront, so a whole wavefront decodes as one vector. Earlier channels are known everywhere.
"""

__all__ = [
    "LinearModel",
    "Front",
    "coding_order",
    "fit",
    "Fitted",
    "fitted",
    "side_bits",
    "push_side",
    "pop_side",
    "encode",
    "decode",
    "decode_planes",
    "THREADS_FROM",
    "KEEP_PIXELS",
]

import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import constriction
import numpy as np

from nfcompress.coders.linear import fitting, fronts, local, symbols
from nfcompress.coding import rans
from nfcompress.coding.primitives import (
    FLOOR,
    FRAC_BITS,
    LOG_SCALE_MIN,
    LOG_SCALE_STEP,
    MEAN_STEPS,
    PRECISION,
    LogisticTables,
    int_bits,
    pop_ints,
    push_ints,
    unzigzag,
    wavefronts,
    zigzag,
)
from nfcompress.errors import FormatError
from nfcompress.threads import one_blas_thread

# Causal neighbours (rows up, columns left) of the channel being coded; 2 * up + left >= 1.
CAUSAL = ((0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (1, 2), (2, 1), (2, -1), (2, 2), (2, -2), (0, 3), (3, 0))
# Neighbours of each earlier channel (known everywhere): the pixel, west, north, north-west, north-east, east, south.
CROSS = ((0, 0), (0, 1), (1, 0), (1, 1), (1, -1), (0, -1), (-1, 0))
# Canvas padding: rows above, columns left and right.
TOP, LEFT, RIGHT = 3, 3, 2
OUTSIDE = 128  # the value of canvas cells with no pixel to copy
BINS = 16
# A pixel's scale context: its activity bin and, with more than one class (images from 128x128,
# where the 16 more scales pay), whether it lies on the edge of a JPEG 8x8 block (most photos were
# JPEGs once, and their block edges are less predictable). From scheme 2, with GRID_CLASSES classes
# or more, the activity is two: the gradients' bin (halved) and the errors' bin.
CONTEXTS = 2 * BINS
GRID_CLASSES = 4
SCHEME = 3  # the payload layout `encode` writes: version 8 files (versions 6 and 7: schemes 1 and 2)
# Activity a falls in bin k when THRESHOLDS[k - 1] <= a < THRESHOLDS[k]: about 2 log2(a + 1).
THRESHOLDS = np.array([int(np.ceil(2 ** (k / 2))) - 1 for k in range(1, BINS)], np.int64)
_BIN_OF = np.searchsorted(THRESHOLDS, np.arange(THRESHOLDS[-1] + 1), side="right")  # the bin of each activity
MAX_WEIGHT = (1 << 31) - 1
# No sub-pixel costs under MIN_BITS (every value's weight is at least FLOOR): a payload bounds the
# size it can decode to, and a forged size is refused before any work.
MIN_BITS = -float(np.log2(((1 << PRECISION) - 255 * FLOOR - 255) / (1 << PRECISION)))
BAND = 1 << 18  # pixels whose features are built at once
KEEP_PIXELS = 1 << 20  # on images up to this size, the encoder builds each band's features once
FIT_PIXELS = 1 << 21  # pixels the weights are fitted on, at most (about)
THREADS_FROM = 1 << 14  # the fewest pixels whose channels are fitted on threads of their own
# The weights are fitted twice: the second time each pixel counts 1 / s**2 for the scale s of its
# context under the first (least squares then fits the logistic's log-likelihood better), s at
# least MIN_FIT_SCALE.
REFITS, MIN_FIT_SCALE = 1, 0.3
CROSS_ERR = 2  # an earlier channel's error at the pixel counts this much in the activity
# Predictor classes: each pixel takes the weights of its class, from its neighbours' gradients;
# with more than one, pixels near the edges (whose neighbourhoods hold copies) have a class of
# their own after them.
# The encoder picks how many by the image's size (more weights to send pay on larger images).
CLASS_COUNTS = (1, 2, 4, 8)
CLASS_PIXELS = (0, 1 << 14, 1 << 17, 1 << 20)  # the fewest pixels for each count
_RAW16 = constriction.stream.model.Uniform(1 << 16)
_RAW8 = constriction.stream.model.Uniform(256)
_CLASSES = constriction.stream.model.Uniform(len(CLASS_COUNTS))
ESCAPE = (1 << 16) - 1  # a weight whose zigzag value is this or more follows in two 16-bit halves
# Indices into CAUSAL of the neighbours the activity reads.
_W, _N, _NW, _NE = 0, 1, 2, 3
ERRORS = 6  # the activity reads the errors of the first 6 of CAUSAL
# From scheme 3 an image of one class (under 128x128) reads fewer neighbours, the first SMALL of
# CAUSAL and of CROSS, and its weights are multiples of SMALL_STEP: on a small image each weight
# costs more than its precision saves.
SMALL, SMALL_STEP = (6, 5), 8
# From scheme 2 a context also has a spike: a share q / SPIKES (q = 0..SPIKES - 1, in the side
# information) of a value's weight moves to the median predictor's value (`_Layout.features`),
# which smooth planes, red and blue above all, meet exactly far more often than the logistic says.
SPIKES = 16
_SPIKE_CODES = constriction.stream.model.Uniform(SPIKES)
SPIKE_BITS = SPIKES.bit_length() - 1
PARTS = 20  # progress is reported in this many parts per channel
# From scheme 3, with GRID_CLASSES classes or more, each predictor class (but the edges') splits
# by where the pixel lies in its JPEG block: on its first column or not, on its first row or not.
# The grid's offset, as BLOCK * rows + columns, or BLOCK * BLOCK for none, is in the side
# information; it also places the block-edge scales.
BLOCK, POSITIONS = 8, 4
_BLOCKS = constriction.stream.model.Uniform(BLOCK * BLOCK + 1)


@dataclass
class LinearModel:
    """A fitted model: per channel, integer weights per class (causal, cross, bias, median), context
    scale codes, spike shares and feedback weights."""

    weights: list[np.ndarray]  # channel c: int64 (_sets(classes), _feature_counts(c + 1, classes)[c])
    scales: list[np.ndarray]  # channel c: int64 (_context_count(classes),), codes 0..255
    # Channel c: int64 (_spike_count(classes),), shares 0..SPIKES - 1; None in scheme 1.
    spikes: list[np.ndarray] | None = None
    # Channel c: int64 (ERRORS,), weight units; None in scheme 1.
    feedback: list[np.ndarray] | None = None
    # The JPEG block grid's offset (rows, columns) from the origin, from scheme 3; None: no block
    # classes, and block-edge scales at offset 0 (as schemes 1 and 2).
    blocks: tuple[int, int] | None = None

    @property
    def classes(self) -> int:
        """Predictor classes (besides the edges' own and the block positions)."""
        sets = self.weights[0].shape[0]
        if sets == 1 or self.blocks is None or sets - 1 < POSITIONS * GRID_CLASSES:
            return max(1, sets - 1)
        return (sets - 1) // POSITIONS


def _grid(classes: int) -> bool:
    """Whether 8x8 block edges have scales of their own: with more than one class."""
    return classes > 1


def _split(classes: int, scheme: int) -> bool:
    """Whether gradients and errors have bins of their own (scheme 2, GRID_CLASSES classes or more)."""
    return scheme >= 2 and classes >= GRID_CLASSES


def _context_count(classes: int, scheme: int = SCHEME) -> int:
    """Scale contexts of a channel with this many classes."""
    return (BINS // 2 if _split(classes, scheme) else 1) * (CONTEXTS if _grid(classes) else BINS)


def _positions(classes: int, blocks: tuple[int, int] | None) -> int:
    """Block positions each class splits into: POSITIONS with a block grid and GRID_CLASSES classes
    or more (on smaller images the weights would cost more than they save)."""
    return POSITIONS if blocks is not None and classes >= GRID_CLASSES else 1


def _sets(classes: int, blocks: tuple[int, int] | None = None) -> int:
    """Weight sets of a channel with this many classes: each split by `_positions`, and one more
    for the edges, if more than one."""
    return classes * _positions(classes, blocks) + (classes > 1)


def _small(classes: int, scheme: int) -> bool:
    """Whether a channel reads the SMALL neighbourhood and steps its weights by SMALL_STEP."""
    return scheme >= 3 and classes == 1


def _neighbours(classes: int, scheme: int) -> tuple[int, int]:
    """How many of CAUSAL and of CROSS a channel's features read."""
    return SMALL if _small(classes, scheme) else (len(CAUSAL), len(CROSS))


def _local_on(classes: int, scheme: int = SCHEME) -> bool:
    """Whether a channel's features hold the local prediction: from scheme 3, on images of more
    than one class (on 64x64 thumbnails it helped the val set 0.5% and cost the held-out 0.5%,
    for twice the decoding time)."""
    return scheme >= 3 and classes > 1


def _weight_step(classes: int, scheme: int = SCHEME) -> int:
    """What every weight is a multiple of (weight units)."""
    return SMALL_STEP if _small(classes, scheme) else 1


def _feature_counts(channels: int, classes: int, scheme: int = SCHEME) -> list[int]:
    causal, cross = _neighbours(classes, scheme)
    return [causal + cross * c + 1 + (scheme >= 2) + _local_on(classes, scheme) for c in range(channels)]


def _canvas(ch: np.ndarray) -> np.ndarray:
    """A channel padded as the decoder fills it: every cell a causal copy or OUTSIDE."""
    h, w = ch.shape
    cv = np.full((h + TOP, w + LEFT + RIGHT), OUTSIDE, np.int32)
    cv[TOP:, LEFT : LEFT + w] = ch
    cv[TOP:, LEFT + w :] = ch[:, -1:]  # right of row r: (r, w - 1)
    cv[TOP + 1 :, :LEFT] = ch[:-1, :1]  # left of row r: (r - 1, 0)
    cv[:TOP, 2 * LEFT : LEFT + w + RIGHT] = ch[0, : w + RIGHT - LEFT]  # above column q: (0, q - 3)
    return cv


def _pads(prev: list[np.ndarray]) -> np.ndarray:
    """The earlier channels, each edge-padded by one pixel, flattened one after another."""
    return np.concatenate([np.pad(p.astype(np.int32), 1, mode="edge").ravel() for p in prev] or [np.zeros(0, np.int32)])


_NONE = np.zeros(0, np.int64)  # no local predictions


class _Layout:
    """Where the features of a channel's pixels lie: CAUSAL in its canvas, CROSS in `_pads` (as
    many of each as `_neighbours` says)."""

    def __init__(self, h: int, w: int, c: int, classes: int, scheme: int = SCHEME) -> None:
        self.c, self.scheme = c, scheme
        self.w, self.cw = w, w + LEFT + RIGHT
        causal, cross = _neighbours(classes, scheme)
        self.offsets = np.array([di * self.cw + dj for di, dj in CAUSAL[:causal]], np.int64)
        size = (h + 2) * (w + 2)
        self.cross = np.array([q * size - di * (w + 2) - dj for q in range(c) for di, dj in CROSS[:cross]], np.int64)

    def places(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """The canvas cells (flat) of pixels (i, j)."""
        return (i + TOP) * self.cw + j + LEFT

    def around(self, cells: np.ndarray) -> np.ndarray:
        """The canvas cells (ERRORS, n) of the W, N, NW, NE, WW and NN neighbours of `places` cells."""
        return cells[None, :] - self.offsets[:ERRORS, None]

    def features(
        self, cv: np.ndarray, pads: np.ndarray, i: np.ndarray, j: np.ndarray, lp: np.ndarray | None = None
    ) -> np.ndarray:
        """Every feature (F, n) of pixels (i, j): canvas neighbours (flat canvas cv), earlier
        channels, 1, from scheme 3 their local predictions lp (None: none) and, from scheme 2,
        the median predictor on the `texture`."""
        return self._compiled(cv, pads, i, j, lp, self.scheme >= 2)

    def raw(self, cv: np.ndarray, pads: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """The first `features` (F, n) of pixels (i, j): canvas neighbours, earlier channels, 1;
        enough for the `texture`."""
        return self._compiled(cv, pads, i, j, None, False)

    def _compiled(
        self, cv: np.ndarray, pads: np.ndarray, i: np.ndarray, j: np.ndarray, lp: np.ndarray | None, finish: bool
    ) -> np.ndarray:
        """`raw` features, with the local predictions lp and the median where `finish` (the compiled
        `fitting.features`)."""
        lp = _NONE if lp is None else np.asarray(lp, np.int64)
        cells, pad_cells = self.places(i, j), (i + 1) * (self.w + 2) + j + 1
        return fitting.features(cv, pads, cells, pad_cells, self.offsets, self.cross, lp, self.c > 0, finish)

    def texture(self, x: np.ndarray) -> np.ndarray:
        """The W, N, NW and NE neighbours (4, n) of each pixel, from its `features` (F, n): of
        the channel, or from scheme 2 of the channel less the first (where the colour's texture
        shows, not the light's)."""
        nb = x[: _NE + 1]
        if self.c and self.scheme >= 2:
            nb = nb - x[len(self.offsets) + 1 : len(self.offsets) + 2 + _NE]
        return nb

    def gradients(self, x: np.ndarray) -> np.ndarray:
        """|W - NW| + |N - NW| + |N - NE| of each pixel's `texture`."""
        nb = self.texture(x)
        return np.abs(nb[_W] - nb[_NW]) + np.abs(nb[_N] - nb[_NW]) + np.abs(nb[_N] - nb[_NE])


def _rows_of(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bands of at most about BAND pixels, as their rows and columns: features are built a band at a time."""
    step = max(1, BAND // w)
    return [np.divmod(np.arange(r * w, min(h, r + step) * w, dtype=np.int64), w) for r in range(0, h, step)]


def _class_of(
    grad: np.ndarray, classes: int, i: np.ndarray, j: np.ndarray, w: int, blocks: tuple[int, int] | None = None
) -> np.ndarray:
    """Each pixel's weight set: its class from its `_Layout.gradients`, times `_positions` plus its
    position in its block (`blocks`: the grid's offset); pixels (i, j) whose neighbourhood
    reaches past an edge of the width-w image take the last set."""
    if classes == 1:
        return np.zeros(len(i), np.int64)
    k = _positions(classes, blocks)
    edge = (i < TOP) | (j < LEFT) | (j >= w - RIGHT)
    cls = _bins(grad) * classes // BINS * k
    if k > 1:
        cls += ((j - blocks[1]) % BLOCK == 0) + 2 * ((i - blocks[0]) % BLOCK == 0)
    return np.where(edge, classes * k, cls)


def _bins(activity: np.ndarray) -> np.ndarray:
    return _BIN_OF[np.minimum(activity, len(_BIN_OF) - 1)]  # activities are never negative


def _prediction(x: np.ndarray, weights: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Integer predictions (weight units, within 0..255) from the features (F, n), each pixel
    with the weights (sets, F) of its class."""
    return fitting.predictions(x, weights, cls, 255 << FRAC_BITS)


def _activity(errs: np.ndarray, cross_err: np.ndarray) -> np.ndarray:
    """The errors (ERRORS, n) of each pixel's W, N, NW, NE, WW and NN neighbours and the earlier
    channels' errors at the pixel (n,), weighed into one number."""
    return 4 * (errs[0] + errs[1]) + 2 * (errs[2] + errs[3] + errs[4] + errs[5]) + cross_err


def _contexts(
    grad: np.ndarray,
    act: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    classes: int,
    scheme: int,
    blocks: tuple[int, int] | None = None,
) -> np.ndarray:
    """Each pixel's scale context, from its `_Layout.gradients` and `_activity`: the bin of their sum,
    or with `_split` the gradients' bin halved times BINS plus the activity's bin; then, with
    `_grid(classes)`, as many more on the edge of a block (rows and columns i, j; the grid at
    offset `blocks`, or 0)."""
    out = _bins(grad) // 2 * BINS + _bins(act) if _split(classes, scheme) else _bins(act + grad)
    if not _grid(classes):
        return out
    oy, ox = blocks or (0, 0)
    edge = ((i - oy + 1) % BLOCK < 2) | ((j - ox + 1) % BLOCK < 2)
    return out + _context_count(classes, scheme) // 2 * edge


def _equalities(nb: np.ndarray) -> np.ndarray:
    """How many of W = N, N = NW, NW = W and N = NE hold in each pixel's texture nb (4, n)."""
    return (nb[_W] == nb[_N]).astype(np.int64) + (nb[_N] == nb[_NW]) + (nb[_NW] == nb[_W]) + (nb[_N] == nb[_NE])


def _evenness(eq: np.ndarray, agree: np.ndarray) -> np.ndarray:
    """A pixel's `_equalities` times 2, plus whether its median is its rounded prediction
    (`agree`): 0..9."""
    return 2 * eq + agree


def _spike_contexts(even: np.ndarray, act: np.ndarray, classes: int) -> np.ndarray:
    """Each pixel's spike context (scheme 2): its `_evenness`, with `_split` times BINS plus the
    bin of its `_activity`."""
    return even * BINS + _bins(act) if _split(classes, SCHEME) else even


def _spike_count(classes: int) -> int:
    """Spike contexts of a channel with this many classes."""
    return 10 * (BINS if _split(classes, SCHEME) else 1)


def _median(x: np.ndarray) -> np.ndarray:
    """Each pixel's spike value (scheme 2): its median feature, within 0..255."""
    return _clip(x[-1], 0, 255)


def _clip(a: np.ndarray, low, high) -> np.ndarray:
    """np.clip without its overhead, which counts in the decoder's many small wavefronts."""
    return np.minimum(np.maximum(a, low), high)


def _round(p: np.ndarray) -> np.ndarray:
    return (p + (1 << (FRAC_BITS - 1))) >> FRAC_BITS


def _fit_scale(q: np.ndarray) -> np.ndarray:
    """`logistic_scale` in numpy's exp, for fitting: only the encoder sees it, so it need not be portable."""
    return np.exp(LOG_SCALE_MIN + LOG_SCALE_STEP * q)


def _mass(e: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The float mass of a logistic of scale s over a residual e's bin [e - 1/2, e + 1/2], for fitting."""
    return 0.5 * (np.tanh((e + 0.5) / (2 * s)) - np.tanh((e - 0.5) / (2 * s)))


_SPAN = 2 * 256 * MEAN_STEPS  # residuals to 1/16 (the tables' resolution), from -256 to 256


@functools.cache
def _masses() -> tuple[np.ndarray, np.ndarray]:
    """`_mass` under every scale code (256, _SPAN) of every residual step (residual steps / MEAN_STEPS,
    from -_SPAN / 2), and its bits (-log2, at least 1e-12 of mass): looked up when fitting."""
    e = (np.arange(_SPAN) - _SPAN // 2) / MEAN_STEPS
    mass = _mass(e[None, :], _fit_scale(np.arange(256))[:, None])
    return mass, -np.log2(np.maximum(mass, 1e-12))


class _Raster(NamedTuple):
    """A channel's coding inputs for every pixel, raster order (`_raster`)."""

    p: np.ndarray  # predictions, weight units (int32)
    contexts: np.ndarray  # scale contexts (int16)
    errors: np.ndarray  # |x - rounded prediction| (int16)
    medians: np.ndarray  # spike values (`_median`)
    spikes: np.ndarray  # spike contexts (int16)
    first: np.ndarray  # the first stage's signed errors, as a flat canvas (0 outside the image)


def coding_order(channels: int) -> list[int]:
    """The order channels are coded in: green first, as it predicts red and blue best."""
    return [1, 0, 2] if channels == 3 else list(range(channels))


def fit(rgb: np.ndarray, ridge: float = 1e-3) -> LinearModel:
    """Least-squares weights per class and per-context scales for an (H, W, C) uint8 image, channels
    in coding order. The weights are fitted on at most about FIT_PIXELS pixels (evenly spread bands)."""
    return _fit(rgb, ridge)[0]


class Fitted(NamedTuple):
    """A model fitted to an image (`fitted`), with what coding needs of every pixel."""

    model: LinearModel
    rasters: list  # per channel in coding order, its `_Raster`

    def predictions(self, c: int) -> np.ndarray:
        """Channel c's predictions (weight units, raster order)."""
        return self.rasters[c].p

    def scale_codes(self, c: int) -> np.ndarray:
        """Channel c's scale codes (raster order)."""
        return self.model.scales[c][self.rasters[c].contexts]


def estimated_bits(rgb: np.ndarray, fit: Fitted) -> float:
    """About the bits `encode` spends on an (H, W, C) uint8 image under the model `fit` holds (the
    fit's float masses for its tables' weights): what auto weighs before coding the image."""
    planes = rgb[..., coding_order(rgb.shape[2])].reshape(-1, rgb.shape[2])
    bits = float(side_bits(fit.model))
    for c, r in enumerate(fit.rasters):
        for s in range(0, len(planes), _CHUNK):  # a run of pixels at a time: a few arrays of each
            part = slice(s, s + _CHUNK)
            bits += _estimated_bits(
                planes[part, c],
                r.p[part],
                fit.model.scales[c][r.contexts[part]],
                r.medians[part],
                fit.model.spikes[c][r.spikes[part]],
            )
    return bits


def _estimated_bits(x: np.ndarray, p: np.ndarray, codes: np.ndarray, medians: np.ndarray, q: np.ndarray) -> float:
    """`estimated_bits` of pixels x under predictions p, scale codes, spike values and spike shares q."""
    at = np.round((x - p / (1 << FRAC_BITS)) * MEAN_STEPS).astype(np.int64) + _SPAN // 2  # p within 0..255: in range
    mass, share = _masses()[0][codes, at], q / SPIKES
    # 0 and 255 take the logistic's tails too.
    ends = (x == 0) | (x == 255)
    e = (x[ends] - p[ends] / (1 << FRAC_BITS)) * np.where(x[ends] == 0, -1, 1)
    mass[ends] = 0.5 * (1 - np.tanh((e - 0.5) / (2 * _fit_scale(codes[ends]))))
    mass = (1 - share) * mass + share * (x == medians)
    return float(-np.log2(np.maximum(mass, 1e-12)).sum())


def fitted(rgb: np.ndarray, threads: int = 1, progress: Callable[[int, int], None] | None = None) -> Fitted:
    """The model `encode` fits to an (H, W, C) uint8 image (channels as the image has them), to
    hand to `encode` and to models that code over its predictions; on images up to KEEP_PIXELS,
    each channel's first fit on another of up to `threads` threads (the same model);
    `progress(done, C)` is called after each channel."""
    planes = np.ascontiguousarray(rgb[..., coding_order(rgb.shape[2])])
    model, rasters = _fit(planes, threads=threads, progress=progress)
    return Fitted(_complete(model), rasters)


def _fit(
    rgb: np.ndarray, ridge: float = 1e-3, threads: int = 1, progress: Callable[[int, int], None] | None = None
) -> tuple[LinearModel, list[_Raster]]:
    """`fit`, and `_raster` of every channel under the fitted weights."""
    h, w, channels = rgb.shape
    classes = max(k for k, n in zip(CLASS_COUNTS, CLASS_PIXELS) if h * w >= n)
    stride = max(1, -(-h * w // FIT_PIXELS))
    blocks = block_grid(rgb)
    weights, scales, spikes, feedback, rasters = [], [], [], [], []
    cross_err = np.zeros(h * w, np.int32)

    def start(c: int) -> tuple:
        """Channel c's features and its first weights, which read no other channel's fit."""
        bands = _Bands(rgb, c, classes)
        wq = _least_squares(rgb, c, bands, stride, classes, blocks, None, ridge)
        return bands, wq, _first_stage(rgb, c, wq, classes, blocks, bands)

    # Each channel's features are kept meanwhile; on small images starting the threads costs more.
    threads = threads if THREADS_FROM <= h * w <= KEEP_PIXELS else 1
    # On threads, numpy's products on one thread each: the channels are the parallel work.
    with (
        ThreadPoolExecutor(threads - 1) if threads > 1 else contextlib.nullcontext() as pool,
        one_blas_thread() if pool else contextlib.nullcontext(),
    ):
        starts = pool.map(start, range(channels)) if pool else map(start, range(channels))
        for c, (bands, wq, first_stage) in enumerate(starts):
            model, r = _fit_channel(rgb, c, bands, wq, first_stage, cross_err, classes, blocks, stride, ridge)
            for part, got in zip((weights, scales, spikes, feedback), model):
                part.append(got)
            rasters.append(r)
            cross_err = cross_err + CROSS_ERR * r.errors
            if progress:
                progress(c + 1, channels)
    return LinearModel(weights, scales, spikes, feedback, blocks), rasters


def _fit_channel(
    rgb: np.ndarray,
    c: int,
    bands: "_Bands",
    wq: np.ndarray,
    first_stage: tuple,
    cross_err: np.ndarray,
    classes: int,
    blocks: tuple[int, int] | None,
    stride: int,
    ridge: float,
) -> tuple[tuple[np.ndarray, ...], "_Raster"]:
    """Channel c's weights, scale codes, spike shares and feedback weights, and its `_Raster`,
    from its first weights `wq` and their `_first_stage` (the earlier channels' errors summed in
    `cross_err`)."""
    omega = None
    for refit in range(1 + REFITS):
        if refit:
            wq = _least_squares(rgb, c, bands, stride, classes, blocks, omega, ridge)
            first_stage = _first_stage(rgb, c, wq, classes, blocks, bands)
        r = _raster(rgb, c, first_stage, cross_err, classes, blocks)
        resid = rgb[..., c].ravel() - r.p / (1 << FRAC_BITS)
        codes = _fit_scales(resid, r.contexts, _context_count(classes))
        omega = 1 / np.maximum(_fit_scale(codes)[r.contexts], MIN_FIT_SCALE) ** 2
    fb = _fit_feedback(rgb, c, bands.rows[::stride], classes, r.p, r.first, omega)
    r = _raster(rgb, c, first_stage, cross_err, classes, blocks, fb)
    resid = rgb[..., c].ravel() - r.p / (1 << FRAC_BITS)
    hits = rgb[..., c].ravel() == r.medians
    codes, q = _fit_spikes(resid, hits, r.contexts, r.spikes, codes, _spike_count(classes))
    return (wq, _unused_repeated(codes, np.bincount(r.contexts, minlength=len(codes)) == 0), q, fb), r


def _unused_repeated(codes: np.ndarray, unused: np.ndarray) -> np.ndarray:
    """Scale codes where each context no pixel reads repeats the code before it (the first, 128):
    its step then costs the fewest bits (`_scale_steps`)."""
    out, before = codes.copy(), 128
    for k in range(len(out)):
        if unused[k]:
            out[k] = before
        before = out[k]
    return out


class _Bands:
    """Channel c's features (`_Layout.features`, with its local predictions where `_local_on`),
    band by band (`_rows_of`); on images up to KEEP_PIXELS, each band's built once and kept."""

    def __init__(self, rgb: np.ndarray, c: int, classes: int) -> None:
        h, w, _ = rgb.shape
        self.cv, self.pads = _canvas(rgb[..., c]).ravel(), _pads([rgb[..., q] for q in range(c)])
        self.layout, self.w = _Layout(h, w, c, classes), w
        self.rows = _rows_of(h, w)
        self.lp = self._local(rgb[..., c]) if _local_on(classes) else None
        self.kept: dict[int, np.ndarray] | None = {} if h * w <= KEEP_PIXELS else None

    def features(self, b: int) -> np.ndarray:
        """The features (F, n) of band b's pixels."""
        if self.kept is not None and b in self.kept:
            return self.kept[b]
        i, j = self.rows[b]
        x = self.layout.features(self.cv, self.pads, i, j, None if self.lp is None else self.lp[i * self.w + j])
        if self.kept is not None:
            self.kept[b] = x
        return x

    def _local(self, plane: np.ndarray) -> np.ndarray:
        """The local predictions (1/16, as `fronts.predict` makes them) of every pixel of the channel
        (values `plane`), raster order."""
        h, w = plane.shape
        layout = self.layout
        tex = np.empty((4, h * w), np.int16)
        base = np.zeros(h * w, np.int16)  # the first channel at the pixel, for later channels
        for i, j in self.rows:
            k = i * w + j
            x = layout.raw(self.cv, self.pads, i, j)
            tex[:, k] = layout.texture(x)
            if layout.c:
                base[k] = x[len(layout.offsets)]
        v = plane.astype(np.int64) - base.reshape(h, w)
        return local.predict_plane(tex.reshape(4, h, w), v) + local.STEPS * base.astype(np.int64)


def block_grid(rgb: np.ndarray) -> tuple[int, int]:
    """The offset (rows, columns) of the 8x8 block grid a JPEG left in an (H, W, C) image: where
    a step between two pixels most often exceeds the two steps beside it together."""

    def offset(x: np.ndarray) -> int:
        d = np.abs(np.diff(x, axis=1))
        jump = d[:, 1:-1] > d[:, :-2] + d[:, 2:]  # the step into column k + 2
        column = (np.arange(jump.shape[1]) + 2) % BLOCK
        return int(np.argmax(np.bincount(column, jump.sum(0), BLOCK) / np.maximum(np.bincount(column, None, BLOCK), 1)))

    x = rgb.astype(np.int32).sum(2)
    return offset(x.T), offset(x)


def _fit_feedback(
    rgb: np.ndarray, c: int, bands: list, classes: int, p: np.ndarray, first: np.ndarray, omega: np.ndarray
) -> np.ndarray:
    """Integer feedback weights (ERRORS,) of channel c by least squares on the pixels of `bands`,
    pixel k counting omega[k]: what the first-stage errors around each pixel (`_Raster.first`)
    say of its own (p the first stage; raster order)."""
    h, w, _ = rgb.shape
    layout = _Layout(h, w, c, classes)
    a, v = 1e-3 * np.eye(ERRORS), np.zeros(ERRORS)
    for i, j in bands:
        k = i * w + j
        f = first[layout.around(layout.places(i, j))].astype(np.float64)
        target = rgb[i, j, c] * float(1 << FRAC_BITS) - p[k]
        a += (f * omega[k]) @ f.T
        v += f @ (target * omega[k])
    return _stepped(np.linalg.solve(a, v), _weight_step(classes))


def _least_squares(
    rgb: np.ndarray,
    c: int,
    bands: _Bands,
    stride: int,
    classes: int,
    blocks: tuple[int, int] | None,
    omega: np.ndarray | None,
    ridge: float,
) -> np.ndarray:
    """Integer weights (sets, F) of channel c by least squares on the pixels of every stride-th
    of its `bands`, pixel k counting omega[k] (raster order; each 1 if None)."""
    h, w, _ = rgb.shape
    sets, n = _sets(classes, blocks), _feature_counts(c + 1, classes)[c]
    a, v, count = np.zeros((sets, n, n)), np.zeros((sets, n)), np.zeros(sets, np.int64)
    for b in range(0, len(bands.rows), stride):
        (i, j), x = bands.rows[b], bands.features(b)
        y = rgb[i, j, c].astype(np.float64)
        cls = _class_of(bands.layout.gradients(x), classes, i, j, w, blocks)
        om = np.ones(len(i)) if omega is None else omega[i * w + j]
        fitting.normal_sums(x, y, cls, om, a, v, count)
    wq = np.empty((sets, n), np.int64)
    for k in range(sets):
        # A class too rare to fit takes the weights of all the pixels. In flat regions some features
        # are one another (systems singular but for the ridge): the least-norm solution, not one
        # that rounding in the sums picks (it moved a 12 MP photo's file by 0.4%).
        ak, vk = (a[k], v[k]) if count[k] >= 4 * n else (a.sum(0), v.sum(0))
        wq[k] = _stepped(
            np.linalg.lstsq(ak + ridge * np.eye(n), vk, rcond=1e-12)[0] * (1 << FRAC_BITS), _weight_step(classes)
        )
    return wq


def _stepped(w: np.ndarray, step: int) -> np.ndarray:
    """Weights (weight units) rounded to integer multiples of step, within +-MAX_WEIGHT."""
    return np.clip(np.round(np.asarray(w, np.float64) / step) * step, -MAX_WEIGHT, MAX_WEIGHT).astype(np.int64)


def _first_stage(
    rgb: np.ndarray, c: int, wq: np.ndarray, classes: int, blocks: tuple[int, int] | None, bands: _Bands
) -> tuple[np.ndarray, ...]:
    """First-stage predictions (weight units), gradients, `_median`s and `_equalities` of
    channel c for every pixel, raster order, with weights `wq` of `classes` classes (block
    grid `blocks`) on the features of its `bands`."""
    h, w, _ = rgb.shape
    p = np.empty(h * w, np.int64)
    grad = np.empty(h * w, np.int32)
    med = np.empty(h * w, np.uint8)
    eq = np.empty(h * w, np.int8)
    for b, (i, j) in enumerate(bands.rows):
        k = i * w + j
        x = bands.features(b)
        grad[k] = bands.layout.gradients(x)
        p[k] = _prediction(x, wq, _class_of(grad[k], classes, i, j, w, blocks))
        med[k] = _median(x)
        eq[k] = _equalities(bands.layout.texture(x))
    return p, grad, med, eq


def _raster(
    rgb: np.ndarray,
    c: int,
    first_stage: tuple,
    cross_err: np.ndarray,
    classes: int,
    blocks: tuple[int, int] | None,
    fb: np.ndarray | None = None,
) -> _Raster:
    """Channel c's `_Raster` from its `_first_stage`, with feedback weights `fb` (None: none), the
    earlier channels' errors summed in `cross_err`."""
    h, w, _ = rgb.shape
    ch = rgb[..., c].astype(np.int32)
    layout = _Layout(h, w, c, classes)
    p, grad, med, eq = first_stage
    inner = (slice(TOP, None), slice(LEFT, LEFT + w))
    first = np.zeros((h + TOP) * layout.cw, np.int32)
    first.reshape(h + TOP, -1)[inner] = ch - _round(p).reshape(h, w)
    bands = _rows_of(h, w)
    if fb is not None:
        p = p.copy()
        for i, j in bands:
            k = i * w + j
            p[k] = _feedback(p[k], first[layout.around(layout.places(i, j))], fb)
    err = np.zeros_like(first)
    err.reshape(h + TOP, -1)[inner] = np.abs(ch - _round(p).reshape(h, w))
    contexts = np.empty(h * w, np.int16)
    spikes = np.empty(h * w, np.int16)
    for i, j in bands:
        k = i * w + j
        act = _activity(err[layout.around(layout.places(i, j))], cross_err[k])
        contexts[k] = _contexts(grad[k], act, i, j, classes, SCHEME, blocks)
        spikes[k] = _spike_contexts(_evenness(eq[k].astype(np.int64), med[k] == _round(p[k])), act, classes)
    errors = err.reshape(h + TOP, -1)[inner].ravel().astype(np.int16)
    return _Raster(p.astype(np.int32), contexts, errors, med, spikes, first)


def _feedback(p: np.ndarray, firsts: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Predictions p (weight units) moved by the feedback weights fb (ERRORS,) times the signed
    first-stage errors (ERRORS, n) of the W, N, NW, NE, WW and NN neighbours, within 0..255."""
    return _clip(p + fb @ firsts, 0, 255 << FRAC_BITS)


def _fit_scales(resid: np.ndarray, contexts: np.ndarray, count: int) -> np.ndarray:
    """For each of `count` contexts, the scale code under which its residuals cost the fewest bits
    (searched every 8 codes, then around the best)."""
    # How often each residual, to 1/16 (the tables' resolution), occurs in each context.
    span = 2 * 256 * MEAN_STEPS
    steps = np.round(resid * MEAN_STEPS).astype(np.int64)
    keys, n = fitting.tally(contexts.astype(np.int64), steps + span // 2, span)
    ctx, at = np.divmod(keys, span)
    bits = _masses()[1]
    out = np.zeros(count, np.int64)
    fitting.cheapest(bits, ctx, at, n, out, False, _COARSE)
    fitting.cheapest(bits, ctx, at, n, out, True, _FINE)
    return out


_COARSE, _FINE, _NEAR = np.arange(4, 256, 8), np.arange(-7, 8), np.arange(-12, 13)  # the codes each search tries


_CHUNK = (
    1 << 16
)  # pixels weighed at once (`estimated_bits`; spike hits, whose bits under every share are SPIKES x this)


def _fit_spikes(
    resid: np.ndarray, hits: np.ndarray, contexts: np.ndarray, spike_contexts: np.ndarray, codes: np.ndarray, count: int
) -> tuple[np.ndarray, ...]:
    """The spike share q of each of `count` spike contexts, and the scale codes near `codes`,
    under which the residuals cost the fewest bits, the pixels where `hits` holds taking the
    spike's weight too (each fitted in turn, twice)."""
    shares = np.arange(SPIKES) / SPIKES
    codes, q = codes.copy(), np.zeros(count, np.int64)
    span = 2 * 256 * MEAN_STEPS
    steps = np.round(resid * MEAN_STEPS).astype(np.int64)
    at_all = steps + span // 2
    masses = _masses()[0]
    for _ in range(2):
        prob = masses[codes[contexts], at_all]
        # A pixel off its spike costs its bits under the scale and -log2(1 - a) more, summed at once.
        off, on = spike_contexts[~hits], spike_contexts[hits]
        bits = np.bincount(off, -np.log2(np.maximum(prob[~hits], 1e-12)), count)
        misses, hit_prob = np.bincount(off, None, count), prob[hits]
        cost = bits - misses * np.log2(1 - shares[:, None])
        for s in range(0, len(on), _CHUNK):
            on_bits = -np.log2(np.maximum((1 - shares[:, None]) * hit_prob[s : s + _CHUNK] + shares[:, None], 1e-12))
            by_share = (np.arange(SPIKES)[:, None] * count + on[s : s + _CHUNK]).ravel()
            cost += np.bincount(by_share, on_bits.ravel(), SPIKES * count).reshape(SPIKES, count)
        q = np.argmin(cost, axis=0)
        # The scales again, each pixel with the share of its spike context.
        keys, n = fitting.tally((contexts.astype(np.int64) * SPIKES + q[spike_contexts]) * 2 + hits, at_all, span)
        group, at = np.divmod(keys, span)
        ctx, share, hit = group // (2 * SPIKES), shares[group // 2 % SPIKES], group % 2
        fitting.cheapest_spiked(masses, ctx, at, n, share, hit.astype(np.float64), codes, _NEAR)
    return codes, q


def _scale_steps(scales: list[np.ndarray]) -> np.ndarray:
    """Each plane's scale codes as zigzagged steps from the one before (the first from 128)."""
    return np.concatenate([zigzag(np.diff(q, prepend=128)) for q in scales])


def _complete(model: LinearModel) -> LinearModel:
    """The model with zero spike shares and feedback weights where it has none (as scheme 1), and
    every weight a multiple of its `_weight_step`."""
    channels, step = len(model.weights), _weight_step(model.classes)
    spikes = model.spikes or [np.zeros(_spike_count(model.classes), np.int64)] * channels
    feedback = model.feedback or [np.zeros(ERRORS, np.int64)] * channels
    weights, feedback = ([_stepped(w, step) for w in part] for part in (model.weights, feedback))
    return LinearModel(weights, model.scales, spikes, feedback, model.blocks)


def _coded_weights(model: LinearModel) -> np.ndarray:
    """The integers that stand for a completed model's weights and feedback weights: each over
    its `_weight_step`, zigzagged."""
    flat = np.concatenate([w.ravel() for w in model.weights + model.feedback])
    return zigzag(flat // _weight_step(model.classes))


def side_bits(model: LinearModel, spikes: bool = True) -> int:
    """The bits `push_side` spends on a model (`spikes`: with its spike shares): what a fitted
    model costs beside its pixels."""
    model = _complete(model)
    weights = int_bits(_coded_weights(model))[1]
    shares = SPIKE_BITS * sum(len(s) for s in model.spikes) if spikes else 0
    return round(2 + np.log2(BLOCK * BLOCK + 1) + int_bits(_scale_steps(model.scales))[1] + shares + weights)


def push_side(coder, model: LinearModel, spikes: bool = True) -> None:
    """Push the class count, the block grid, the scale codes (steps), the spike shares (unless
    not `spikes`: a decoder that does not read them) and the weights, the steps and the weights
    zigzagged through `_push_ints`."""
    push_ints(coder, _coded_weights(model))
    if spikes:
        coder.encode_reverse(np.concatenate(model.spikes).astype(np.int32), _SPIKE_CODES)
    push_ints(coder, _scale_steps(model.scales))
    grid = BLOCK * BLOCK if model.blocks is None else BLOCK * model.blocks[0] + model.blocks[1]
    coder.encode_reverse(np.array([grid], np.int32), _BLOCKS)
    coder.encode_reverse(np.array([CLASS_COUNTS.index(model.classes)], np.int32), _CLASSES)


def pop_side(coder, channels: int, scheme: int, spikes: bool = True) -> LinearModel:
    """The model `push_side` pushed (`spikes`: with its spike shares, else it has none), or in
    scheme 2: no block grid; in scheme 1 also the scale codes 8 bits each, no spikes, the weights
    16 bits each, wider ones escaped."""
    classes = CLASS_COUNTS[int(coder.decode(_CLASSES, 1)[0])]
    blocks = None
    if scheme >= 3:
        grid = int(coder.decode(_BLOCKS, 1)[0])
        blocks = None if grid == BLOCK * BLOCK else divmod(grid, BLOCK)
    k = _context_count(classes, scheme)
    counts = _feature_counts(channels, classes, scheme)
    sets = _sets(classes, blocks)
    weight_count = sets * sum(counts)
    if scheme >= 2:
        steps = unzigzag(pop_ints(coder, k * channels)).reshape(channels, k)
        scales = np.cumsum(steps, axis=1) + 128
        m = _spike_count(classes)
        shares = (
            list(coder.decode(_SPIKE_CODES, m * channels).astype(np.int64).reshape(channels, m)) if spikes else None
        )
        u = pop_ints(coder, weight_count + ERRORS * channels)
        feedback = list(unzigzag(u[weight_count:]).reshape(channels, ERRORS) * _weight_step(classes, scheme))
        u = u[:weight_count]
    else:
        scales = coder.decode(_RAW8, k * channels).astype(np.int64).reshape(channels, k)
        shares = feedback = None
        u = coder.decode(_RAW16, weight_count).astype(np.int64)
        wide = np.flatnonzero(u == ESCAPE)
        if len(wide):
            halves = coder.decode(_RAW16, 2 * len(wide)).astype(np.int64).reshape(-1, 2)
            u[wide] = (halves[:, 0] << 16) | halves[:, 1]
    flat = unzigzag(u) * _weight_step(classes, scheme)
    ends = np.cumsum([0, *[sets * n for n in counts]])
    weights = [flat[a:b].reshape(sets, n) for a, b, n in zip(ends[:-1], ends[1:], counts)]
    return LinearModel(weights, list(scales), shares, feedback, blocks)


def encode(
    rgb: np.ndarray,
    model: LinearModel | None = None,
    progress: Callable[[int, int], None] | None = None,
    fit: Fitted | None = None,
) -> tuple[bytes, np.ndarray, int]:
    """An (H, W, C) uint8 image as one ANS stream, the ideal bits of each pixel (H, W) and the
    bits of the model itself (`side_bits`), under `model`, or the model `fit` holds (`fitted`),
    or else one fitted now; `progress(done, total)` is called once a channel is fitted and once
    it is coded."""
    rgb = np.ascontiguousarray(rgb[..., coding_order(rgb.shape[2])])
    if fit is not None:
        model, rasters = fit
    else:
        model, rasters = _fit(rgb) if model is None else (model, None)
    h, w, channels = rgb.shape
    model = _complete(model)
    order = np.concatenate([i * w + j for i, j in wavefronts(h, w)])  # the order `decode` meets pixels in
    ideal = np.zeros(h * w)
    if rasters is None:
        rasters, cross_err = [], np.zeros(h * w, np.int32)
        for c in range(channels):
            bands = _Bands(rgb, c, model.classes)
            first_stage = _first_stage(rgb, c, model.weights[c], model.classes, model.blocks, bands)
            rasters.append(_raster(rgb, c, first_stage, cross_err, model.classes, model.blocks, model.feedback[c]))
            cross_err = cross_err + CROSS_ERR * rasters[-1].errors
    if progress:
        progress(channels, 2 * channels)
    # Channel after channel from the last, each on top of the next one's words (the decoder pops
    # channel 0 first), so that only one channel's symbols are held at once.
    words = rans.NOTHING
    for c in reversed(range(channels)):
        r = rasters[c]
        row, ip = LogisticTables.index(r.p[order], r.contexts[order])
        q = model.spikes[c][r.spikes[order]].astype(np.int64)
        x, med = rgb[..., c].ravel()[order].astype(np.int64), r.medians[order].astype(np.int64)
        io = rans.sink(h * w)
        freq = symbols.record(LogisticTables(model.scales[c]).cum, row, ip, med, q, x, SPIKES, io)
        words = rans.finish(io, words)
        ideal[order] += PRECISION - np.log2(freq)
        if progress:
            progress(2 * channels - c, 2 * channels)
    coder = constriction.stream.stack.AnsCoder(words) if len(words) else constriction.stream.stack.AnsCoder()
    push_side(coder, model)
    return coder.get_compressed().astype("<u4").tobytes(), ideal.reshape(h, w), side_bits(model)


def decode(
    data: bytes,
    height: int,
    width: int,
    channels: int,
    progress: Callable[[int, int], None] | None = None,
    scheme: int = SCHEME,
) -> np.ndarray:
    """The (H, W, C) uint8 image from a stream made by `encode` (schemes 1 and 2: of an
    nfcompress before format versions 7 and 8); `progress(done, total)` is called PARTS times per
    channel."""
    if len(data) % 4:
        raise FormatError("corrupted payload: ANS stream length is not a multiple of 4")
    if height * width * channels * MIN_BITS > 8 * len(data) + 64:
        raise FormatError(f"corrupted .nfc file: {len(data)} bytes cannot hold a {width}x{height} image")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
    except ValueError as e:
        raise FormatError(f"corrupted payload: {e}") from None
    model = pop_side(coder, channels, scheme)
    if any((q < 0).any() or (q > 255).any() for q in model.scales):
        raise FormatError("corrupted payload: a scale code out of range")
    io = rans.source(coder.get_compressed())  # the pixels: the compiled coder goes on from here
    tables = [LogisticTables(s) for s in model.scales]

    def values(f: Front) -> np.ndarray:
        row, ip = tables[f.c].index(f.p, f.contexts)
        return symbols.decode(tables[f.c].cum, row, ip, f.medians, f.spikes, SPIKES, io)

    out = decode_planes(model, height, width, channels, values, progress, scheme)
    if not rans.exhausted(io):
        raise FormatError("corrupted payload: data left after the last pixel")
    return out


class Front(NamedTuple):
    """What the model says of a wavefront's pixels (rows i, columns j) of channel c (in coding
    order) before they are decoded."""

    c: int
    i: np.ndarray
    j: np.ndarray
    p: np.ndarray  # predictions, weight units (int64)
    contexts: np.ndarray  # scale contexts
    medians: np.ndarray  # spike values (zeros in scheme 1)
    spikes: np.ndarray  # spike shares (zeros in scheme 1)


def decode_planes(
    model: LinearModel,
    height: int,
    width: int,
    channels: int,
    values: Callable[[Front], np.ndarray],
    progress: Callable[[int, int], None] | None = None,
    scheme: int = SCHEME,
    slope: int = 2,
) -> np.ndarray:
    """The (H, W, C) uint8 image whose wavefronts (of `slope`: `wavefronts`), in decoding order,
    `values` decodes from what the fitted model says of them (a `Front`); `progress(done, total)`
    is called PARTS times per channel. Every cell the fitted model reads lies on an earlier
    wavefront of slope 2, and so of any steeper slope."""
    if 3 * slope + 4 > local.RING:
        raise ValueError(f"wavefronts of slope {slope} outrun the local predictor's prefix sums")
    out = np.empty((height, width, channels), np.uint8)
    cross_err = np.zeros(height * width, np.int32)
    steps = list(wavefronts(height, width, slope))
    for c in range(channels):
        plane = _plane(model, c, _Layout(height, width, c, model.classes, scheme), scheme)
        st = fronts.State.start(height, width, _pads([out[..., q] for q in range(c)]), cross_err, plane.local, OUTSIDE)
        for t, (i, j) in enumerate(steps):
            if progress and (t + 1) * PARTS // len(steps) > t * PARTS // len(steps):
                progress(c * PARTS + (t + 1) * PARTS // len(steps), channels * PARTS)
            p, p1, contexts, med, q, tex = fronts.predict(plane, st, i, j, THRESHOLDS)
            fronts.settle(plane, st, i, j, values(Front(c, i, j, p, contexts, med, q)), p, p1, tex)
        out[..., c] = st.inner(st.cv)
        cross_err = cross_err + CROSS_ERR * st.inner(st.err).ravel()
    return np.ascontiguousarray(out[..., np.argsort(coding_order(channels))])


def _plane(model: LinearModel, c: int, layout: _Layout, scheme: int) -> fronts.Plane:
    """Channel c's constants for the compiled decoder step."""
    return fronts.Plane(
        c,
        scheme,
        layout.offsets,
        layout.cross,
        np.asarray(model.weights[c], np.int64),
        model.classes,
        _positions(model.classes, model.blocks),
        model.blocks or (0, 0),
        np.zeros(ERRORS, np.int64) if model.feedback is None else np.asarray(model.feedback[c], np.int64),
        model.feedback is not None,
        np.zeros(1, np.int64) if model.spikes is None else np.asarray(model.spikes[c], np.int64),
        model.spikes is not None,
        _local_on(model.classes, scheme),
        _split(model.classes, scheme),
        _context_count(model.classes, scheme) // 2 if _grid(model.classes) else 0,
    )
