"""The learned causal model: each sub-pixel's distribution from a small network over its decoded
neighbours, trained on thumbnails of photos.

A flow sees the whole image at once and pays for it in how sharply it can predict; a per-image
linear model pays for its weights. On small images a network that reads the decoded pixels
around each sub-pixel, trained once on many photos, codes smaller than both.

Planes code in the order green, red, blue (a grey image, from format version 23, as green
alone); within a plane, wavefronts t = 2i + j (row i,
column j) in increasing t, as in the linear model (`wavefronts`), red LAG wavefronts behind green and blue LAG
behind red, so that one step of the decoder codes a wavefront of each. A sub-pixel reads its own
plane's causal neighbours (`CAUSAL`) and the 3x3 window of each plane coded before it, as
integers relative to a median prediction (`base`). The network is integer arithmetic throughout:
its weights are integers and every sum an integer under 2**52 in float64, so any order of
summation gives the same integers; the distribution is a mixture of the linear model's exact
discretized logistics, weighted by `det_exp` of the network's logits. Files decode alike on
every machine.
"""

from __future__ import annotations

__all__ = [
    "CAUSAL",
    "WINDOW",
    "MAX_PIXELS",
    "MAX_FRONTS",
    "fits",
    "PlaneWeights",
    "feature_count",
    "features",
    "planes_of",
    "pad_planes",
    "canvas",
    "quantize",
    "dequantize",
    "load",
    "mixture_rows",
    "mixture_parts",
    "encode",
    "decode",
    "decode_many",
    "Encoded",
    "replay",
]

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import constriction
import numpy as np
from safetensors.numpy import load_file

from nfcompress.coders.causal import online, symbols
from nfcompress.coders.causal.symbols import ACT_BITS, LOG_SCALE_MIN, LOG_SCALE_STEPS, MEAN_SCALE, MIX_BITS, OUT_BITS
from nfcompress.coders.linear.symbols import ROW  # every row of weights sums to this (the coder adds 1 to each)
from nfcompress.coding import rans
from nfcompress.coding.primitives import FRAC_BITS, PRECISION, det_exp, every_scale, ordered_sum, wavefronts
from nfcompress.compiled import compiled
from nfcompress.container import GREY_CAUSAL
from nfcompress.errors import FormatError, NfcError
from nfcompress.model_files import PAYLOAD_MODELS, pinned, sha256_file, shipped_dir

# Causal neighbours (rows up, columns left) of the plane being coded; 2 * up + left >= 1, so every
# one lies on an earlier wavefront.
CAUSAL = (
    (0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0), (1, 2), (2, 1), (2, -1), (2, 2), (2, -2),
    (0, 3), (3, 0), (3, 1), (3, -1), (1, 3), (2, 3), (3, 2), (3, -2),
)  # fmt: skip
# The window read in each earlier plane (rows down, columns right of the pixel), the pixel itself apart.
WINDOW = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
PAD = 3  # canvas padding on every side
OUTSIDE = 128  # green's value outside the image; red and blue read green's there
EDGE_FLAG = 16  # the value of an edge flag (`EDGES`) that holds
# Edge flags: first row, first column, second row, second column, last column, the one before.
EDGES = 6
ORDER = (1, 0, 2)  # planes are coded green, red, blue
# Where west, north and north-west stand in an earlier plane's window (the pixel first, then WINDOW).
_WEST_NORTH = [1 + WINDOW.index(c) for c in ((0, -1), (-1, 0), (-1, -1))]


def feature_count(k: int) -> int:
    """How many integer features plane k (0 green, 1 red, 2 blue) reads."""
    return len(CAUSAL) + k * (len(WINDOW) + 3) + 1 + EDGES


def planes_of(rgb: np.ndarray) -> np.ndarray:
    """An (H, W, 3) or (H, W, 1) uint8 image as int64 planes (3 or 1, H, W) in coding order."""
    order = list(ORDER) if rgb.shape[2] == 3 else [0]
    return np.ascontiguousarray(rgb[..., order].transpose(2, 0, 1)).astype(np.int64)


def _pixels_of(planes: np.ndarray) -> np.ndarray:
    """`planes_of`'s inverse: uint8 (H, W, C) from planes (C, H, W) in coding order."""
    order = np.argsort(ORDER) if len(planes) == 3 else [0]
    return np.ascontiguousarray(planes.transpose(1, 2, 0)[..., order].astype(np.uint8))


def pad_planes(planes: np.ndarray) -> np.ndarray:
    """Planes (n, H, W) with PAD cells on every side copied from the nearest pixel."""
    rows, cols = _edge_index(*planes.shape[1:])
    return np.ascontiguousarray(planes[:, rows[:, None], cols[None, :]])  # else each plane's ravel copies


@functools.cache
def _edge_index(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns a padded plane's cells copy (np.pad's "edge", many times faster)."""
    return np.clip(np.arange(-PAD, h + PAD), 0, h - 1), np.clip(np.arange(-PAD, w + PAD), 0, w - 1)


def _edge(plane: np.ndarray, h: int, w: int) -> None:
    """Fill padded planes' padding (..., H + 2 PAD, W + 2 PAD) from their nearest pixels, in
    place (`pad_planes` of each)."""
    plane[..., :PAD, PAD : PAD + w] = plane[..., PAD : PAD + 1, PAD : PAD + w]
    plane[..., PAD + h :, PAD : PAD + w] = plane[..., PAD + h - 1 : PAD + h, PAD : PAD + w]
    plane[..., :PAD] = plane[..., PAD : PAD + 1]
    plane[..., PAD + w :] = plane[..., PAD + w - 1 : PAD + w]


def _outside_from(cv: np.ndarray, source: np.ndarray, h: int, w: int) -> None:
    """Copy padded planes' padding into canvases (..., H + 2 PAD, W + 2 PAD), in place."""
    cv[..., :PAD, :], cv[..., PAD + h :, :] = source[..., :PAD, :], source[..., PAD + h :, :]
    cv[..., :PAD], cv[..., PAD + w :] = source[..., :PAD], source[..., PAD + w :]


def canvas(planes: np.ndarray, k: int) -> np.ndarray:
    """Plane k's padded canvas (H + 2 PAD, W + 2 PAD): its pixels, and outside the image OUTSIDE
    for green and green's padded value for red and blue."""
    h, w = planes.shape[1:]
    if k == 0:
        out = np.full((h + 2 * PAD, w + 2 * PAD), OUTSIDE, np.int64)
    else:
        out = pad_planes(planes[:1])[0].copy()
    out[PAD : PAD + h, PAD : PAD + w] = planes[k]
    return out


def features(
    cv: np.ndarray,
    earlier: np.ndarray,
    k: int,
    i: np.ndarray,
    j: np.ndarray,
    w: int,
    at: np.ndarray | None = None,
    extra: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Integer features (n, feature_count(k)) and median predictions (n,) of plane k's sub-pixels
    at rows i, columns j, from its canvas `cv` (only causal cells are read) and the padded earlier
    planes `earlier` (k, H + 2 PAD, W + 2 PAD): the causal neighbours less the median prediction;
    for each earlier plane, its pixel less that, its window less its pixel, and its west and north
    less ours; the median prediction less 128; the edge flags. With `at`, cv (N, H + 2 PAD,
    W + 2 PAD) and `earlier` (k, N, ...) are stacks of N images, and sub-pixel n's image begins
    at flat offset at[n] of its stack. The features are followed by `extra` columns left to the
    caller."""
    cw = cv.shape[-1]
    at = np.zeros(len(i), np.int64) if at is None else at
    f = np.empty((len(i), feature_count(k) + extra), np.int64)
    base = np.empty(len(i), np.int64)
    wins = np.ascontiguousarray(earlier.reshape(len(earlier), -1)) if k else np.zeros((1, 1), np.int64)
    _features(cv.reshape(-1), wins, k, i.astype(np.int64), j.astype(np.int64), at, w, cw, f, base)
    return f, base


_CAUSAL_AT = np.array(CAUSAL, np.int64)
_WINDOW_AT = np.array(((0, 0), *WINDOW), np.int64)
_WN = np.array(_WEST_NORTH, np.int64)


@compiled
def _features(
    cv: np.ndarray,
    wins: np.ndarray,
    k: int,
    i: np.ndarray,
    j: np.ndarray,
    starts: np.ndarray,
    w: int,
    cw: int,
    f: np.ndarray,
    base: np.ndarray,
) -> None:
    """`features` into f and base, a sub-pixel at a time, of flat canvases."""
    m = len(CAUSAL)
    near = np.empty(3, np.int64)
    win = np.empty((max(k, 1), len(WINDOW) + 1), np.int64)
    for a in range(i.size):
        at = starts[a] + (i[a] + PAD) * cw + j[a] + PAD
        for c in range(m):
            f[a, c] = cv[at - _CAUSAL_AT[c, 0] * cw - _CAUSAL_AT[c, 1]]
        for p in range(k):
            for c in range(len(WINDOW) + 1):
                win[p, c] = wins[p, at + _WINDOW_AT[c, 0] * cw + _WINDOW_AT[c, 1]]
        for c in range(3):
            near[c] = f[a, c] - win[0, _WN[c]] if k else f[a, c]
        dw, dn, dnw = near[0], near[1], near[2]
        b = max(min(dw, dn), min(max(dw, dn), dw + dn - dnw))
        if k:
            b += win[0, 0]
        base[a] = b
        col = m
        for p in range(k):
            centre = win[p, 0]
            f[a, col] = centre - b
            for c in range(1, len(WINDOW) + 1):
                f[a, col + c] = win[p, c] - centre
            col += len(WINDOW) + 1
            f[a, col] = win[p, _WN[0]] - f[a, 0]
            f[a, col + 1] = win[p, _WN[1]] - f[a, 1]
            col += 2
        for c in range(m):
            f[a, c] -= b
        f[a, col] = b - 128
        ia, ja = i[a], j[a]
        flags = (ia == 0, ja == 0, ia == 1, ja == 1, ja == w - 1, ja == w - 2)
        for c in range(EDGES):
            f[a, col + 1 + c] = EDGE_FLAG if flags[c] else 0


# The integer network's fixed point: inputs are grey levels; the first layer's weights count in
# 2**-16 (its float weights over 16, as the float network reads features in units of 16), the
# others' in 2**-12; hidden activations in 2**-8 (`symbols.ACT_BITS`), outputs in 2**-20
# (`symbols.OUT_BITS`).
FIRST_BITS, WEIGHT_BITS = 16, 12
EXACT_LIMIT = 2.0**52  # every integer the network forms stays under this, so float64 holds it exactly
FEATURE_LIMIT = 1024  # no feature's magnitude reaches this (`features`: at most 510, or 383)
# Rows the network runs at once: its layers then stay in the core's cache (4,096 rows at once
# took 1.7 times as long on a 2-core Zen 4).
ROWS = 512


@dataclass(frozen=True)
class PlaneWeights:
    """One plane's integer network (float64 arrays holding integers)."""

    first: np.ndarray  # (features, hidden)
    first_bias: np.ndarray  # (hidden,)
    second: np.ndarray  # (hidden, hidden)
    second_bias: np.ndarray
    out: np.ndarray  # (hidden, 3 K): K means, K log scales, K logits
    out_bias: np.ndarray

    def outputs(self, f: np.ndarray) -> np.ndarray:
        """Integer outputs (n, 3 K), in 2**-OUT_BITS, of integer features (n, features)."""
        return self.hidden_outputs(f)[1]

    def hidden_outputs(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The last hidden layer's integer activations (n, hidden), in 2**-ACT_BITS, and the
        outputs (n, 3 K) they give, of integer features (n, features)."""
        if len(f) <= ROWS:
            return self._layers(f)
        g, o = np.empty((len(f), self.out.shape[0])), np.empty((len(f), self.out.shape[1]))
        for s in range(0, len(f), ROWS):
            g[s : s + ROWS], o[s : s + ROWS] = self._layers(f[s : s + ROWS])
        return g, o

    def _layers(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = f.astype(np.float64) @ self.first
        _rectify(h, self.first_bias, 2.0 ** -(FIRST_BITS - ACT_BITS), h, False)
        g = h @ self.second
        _rectify(g, self.second_bias, 2.0**-WEIGHT_BITS, h, True)
        o = g @ self.out
        o += self.out_bias
        return g, o

    def bound(self) -> float:
        """The largest magnitude any sum of the network can reach, for features under FEATURE_LIMIT."""
        s1 = FEATURE_LIMIT * np.abs(self.first).sum(0) + np.abs(self.first_bias)
        h1 = np.floor(s1 / 2.0 ** (FIRST_BITS - ACT_BITS))
        s2 = np.abs(self.second).T @ h1 + np.abs(self.second_bias)
        h2 = np.floor(s2 / 2.0**WEIGHT_BITS) + h1
        s3 = np.abs(self.out).T @ h2 + np.abs(self.out_bias)
        return float(max(s1.max(), s2.max(), s3.max()))


@compiled
def _rectify(a: np.ndarray, bias: np.ndarray, scale: float, skip: np.ndarray, skipping: bool) -> None:
    """A layer's sums a (n, m) in place: (a + bias) * scale (a power of two: exact), floored,
    rectified, plus skip where `skipping` (every step an exact integer in float64)."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            v = max(np.floor((a[i, j] + bias[j]) * scale), 0.0)
            a[i, j] = v + skip[i, j] if skipping else v


def quantize(state: dict[str, np.ndarray], k: int) -> PlaneWeights:
    """Plane k's integer network from the float network's state (nfcompress.coders.causal.train names)."""

    def w(name: str) -> np.ndarray:
        return np.asarray(state[f"planes.{k}.{name}"], np.float64)

    act = 2.0**ACT_BITS
    return PlaneWeights(
        first=np.round(w("first.weight").T / EDGE_FLAG * 2.0**FIRST_BITS),
        first_bias=np.round(w("first.bias") * act * 2.0 ** (FIRST_BITS - ACT_BITS)),
        second=np.round(w("second.weight").T * 2.0**WEIGHT_BITS),
        second_bias=np.round(w("second.bias") * act * 2.0**WEIGHT_BITS),
        out=np.round(w("out.weight").T * 2.0 ** (OUT_BITS - ACT_BITS)),
        out_bias=np.round(w("out.bias") * 2.0**OUT_BITS),
    )


def dequantize(pw: PlaneWeights) -> dict[str, np.ndarray]:
    """The float network's layers (`quantize`'s inverse, to its rounding) of one plane's integer
    network, by the names of nfcompress.coders.causal.train's network within a plane."""
    act = 2.0**ACT_BITS
    return {
        "first.weight": (pw.first * EDGE_FLAG / 2.0**FIRST_BITS).T,
        "first.bias": pw.first_bias / act / 2.0 ** (FIRST_BITS - ACT_BITS),
        "second.weight": (pw.second / 2.0**WEIGHT_BITS).T,
        "second.bias": pw.second_bias / act / 2.0**WEIGHT_BITS,
        "out.weight": (pw.out / 2.0 ** (OUT_BITS - ACT_BITS)).T,
        "out.bias": pw.out_bias / 2.0**OUT_BITS,
    }


# The shipped weights each format version's causal files decode with, and their sha256: a causal
# file names no model, so its version binds it to exactly these weights.
MODELS = {
    10: (PAYLOAD_MODELS["causal"][10], "869a352c109dd519acd2741d1561d9880fc071d543820a4bb5d6e109df38b9ba"),
    15: (PAYLOAD_MODELS["causal"][15], "fabcee8bc4406aa9f1179a0164a9cbc099d007f76ed972961796331f4e72733c"),
    16: (PAYLOAD_MODELS["causal"][16], "e3bf4049fbffcffae3ebb682b1ff18aded6b581c9a4062b45f15de9d17c2cf87"),
}
# From this format version each plane's output layer is tuned to the image as it codes
# (`online`), with the network of version 16.
ONLINE = 21
RATE = 3e-4  # its steps (`online`), in float weights
NEWEST = 23  # the version new files are written with (container.WRITTEN; 22 is a leaner file)
GREY = GREY_CAUSAL  # from this format version a causal file may hold a grey image (green's network codes it)
NEWEST_NETWORK = pinned(MODELS, NEWEST)  # the (name, sha256) of the network new files code with
# The largest image (pixels) the codec tries the causal model on, and the largest a file may hold:
# decoding costs a network run per wavefront, fine on thumbnails, slow on photos.
MAX_PIXELS = 128 * 128
# The most wavefronts (2 (h - 1) + w) of an image it codes, twice a 128x128 image's: a thin strip
# of as many pixels has up to 2**15 of them, and one network run each (a 1x16384 strip decodes in
# about 50 s, against 1 s for 128x128). Files of such strips (0.9 wrote them) still decode.
MAX_FRONTS = 2 * (2 * 127 + 128)


def fits(height: int, width: int) -> bool:
    """Whether the codec codes an image of this size with the causal model: small, and not a thin strip."""
    return height * width <= MAX_PIXELS and 2 * (height - 1) + width <= MAX_FRONTS


SEGMENT = 4096  # sub-pixels whose distributions are built at once when encoding
# Red decodes LAG wavefronts behind green, blue LAG behind red: a plane's 3x3 window in an earlier
# plane reaches 2 + 1 = 3 wavefronts (t = 2i + j) ahead of the pixel, and the planes of one step
# decode together.
LAG = 4


def mixture_rows(o: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Integer weights (n, 256) of the values 0..255, each at least FLOOR, under the mixture the
    outputs o (n, 3 K) give around `centre` (units of 2**-FRAC_BITS): each component one of the
    linear model's tables (`mixture_parts`)."""
    p, q, mix = mixture_parts(o, centre)
    n, k = p.shape
    tables = every_scale()
    total = mix[:, :1] * tables.rows(p[:, 0], q[:, 0])
    for c in range(1, k):
        total += mix[:, c : c + 1] * tables.rows(p[:, c], q[:, c])
    rows = np.floor(total / 2.0**MIX_BITS)
    rows[np.arange(n), np.argmax(rows, 1)] += ROW - rows.sum(1)
    return rows


def mixture_parts(o: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mixture's components that the outputs o (n, 3 K) give around `centre`: predictions
    (units of 2**-FRAC_BITS), scale codes and weights summing to 2**MIX_BITS, each (n, K) int64."""
    k = o.shape[1] // 3
    n = len(o)
    frac = FRAC_BITS
    p = centre[:, None] + np.floor(o[:, :k] * (MEAN_SCALE * 2.0 ** (frac - OUT_BITS)))
    p = np.clip(p, 0, (256 << frac) - 1).astype(np.int64)
    half = 2.0 ** (OUT_BITS - 1) / LOG_SCALE_STEPS
    q = np.floor((o[:, k : 2 * k] - LOG_SCALE_MIN * 2.0**OUT_BITS + half) / (2.0**OUT_BITS / LOG_SCALE_STEPS))
    q = np.clip(q, 0, 255).astype(np.int64)
    logits = o[:, 2 * k :] / 2.0**OUT_BITS
    e = det_exp(logits - logits.max(1, keepdims=True))
    mix = np.floor(e / ordered_sum(e)[:, None] * 2.0**MIX_BITS)
    top = np.argmax(mix, 1)
    mix[np.arange(n), top] += 2.0**MIX_BITS - mix.sum(1)
    return p, q, mix.astype(np.int64)


def load(
    path: Path | None = None, sha256: str | None = None, what: str = "causal model", version: int = NEWEST
) -> list[PlaneWeights]:
    """The integer networks of green, red and blue: by default the shipped ones of format
    `version`'s files, checked against their sha256 in MODELS; others against `sha256` or, without
    one, the sha256 in the card beside them (`what` names the model in messages)."""
    if path is None:
        name, sha256 = pinned(MODELS, version)
        path = shipped_dir() / f"{name}.safetensors"
    path = Path(path)
    if sha256 is None:
        try:
            sha256 = str(json.loads(path.with_suffix(".json").read_text())["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            raise NfcError(f"the {what} {path} has no card with its sha256 beside it") from None
    try:
        digest = sha256_file(path)
    except OSError as e:
        raise NfcError(f"cannot read the {what} {path}: {e.strerror or e}") from None
    if digest != sha256:
        raise NfcError(f"the {what} {path} does not match its sha256 (damaged or replaced weights)")
    return _load(str(path), digest, what)


_FIELDS = ("first", "first_bias", "second", "second_bias", "out", "out_bias")


@functools.cache
def _load(path: str, digest: str, what: str) -> list[PlaneWeights]:
    """The weights of a file whose sha256 is `digest` (cached by both: a replaced file loads anew)."""
    try:
        t = load_file(path)
    except (OSError, ValueError) as e:
        raise NfcError(f"cannot read the {what} {path}: {e}") from None
    try:
        planes = [PlaneWeights(**{f: t[f"planes.{k}.{f}"].astype(np.float64) for f in _FIELDS}) for k in range(3)]
    except KeyError as e:
        raise NfcError(f"the {what} {path} lacks {e}") from None
    if any(pw.bound() >= EXACT_LIMIT for pw in planes):
        raise NfcError(f"the {what} {path} has weights too large for exact arithmetic")
    return planes


def save(planes: list[PlaneWeights], path: Path) -> None:
    """Integer weights as safetensors (int32)."""
    from safetensors.numpy import save_file

    out = {}
    for k, pw in enumerate(planes):
        for f in _FIELDS:
            a = getattr(pw, f)
            if np.abs(a).max() >= 2**31:
                raise ValueError(f"plane {k} {f}: a weight too large for int32")
            out[f"planes.{k}.{f}"] = np.ascontiguousarray(a.astype(np.int32))
    save_file(out, str(path))


def _schedule(h: int, w: int, n: int = 3) -> list[list[tuple[int, np.ndarray, np.ndarray]]]:
    """Decoding steps of n planes: in step s, green's wavefront s, red's s - LAG and blue's
    s - 2 LAG (those that exist), each as (plane, rows, columns). A plane's window reaches LAG
    wavefronts ahead."""
    fronts = list(wavefronts(h, w))
    steps = [
        [(k, *fronts[s - LAG * k]) for k in range(n) if 0 <= s - LAG * k < len(fronts)]
        for s in range(len(fronts) + (n - 1) * LAG)
    ]
    return [step for step in steps if step]


@functools.cache
def _decoding_cells(h: int, w: int, n: int = 3) -> np.ndarray:
    """Each sub-pixel's index in an (n, h, w) array, in the order the decoder takes them (`_schedule`)."""
    return np.concatenate([(k * h + i) * w + j for step in _schedule(h, w, n) for k, i, j in step])


@functools.cache
def _encoding_order(h: int, w: int, n: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows and columns of a plane's sub-pixels in wavefront order, where each sub-pixel the
    decoder takes (`_schedule`) stands among the n planes' so ordered, one after another, and
    where each wavefront ends among a plane's."""
    fronts = list(wavefronts(h, w))
    i, j = np.concatenate([a for a, _ in fronts]), np.concatenate([b for _, b in fronts])
    starts = np.concatenate([[0], np.cumsum([len(a) for a, _ in fronts])])
    steps = [
        (k, s - LAG * k) for s in range(len(fronts) + (n - 1) * LAG) for k in range(n) if 0 <= s - LAG * k < len(fronts)
    ]
    order = np.concatenate([np.arange(starts[t], starts[t + 1]) + k * h * w for k, t in steps])
    return i, j, order, starts[1:]


class Encoded(NamedTuple):
    """An image's stream (`encode`), its ideal bits, and, where asked for, its symbols' intervals
    in the stream and values (starts, frequencies and values, 3 H W each, in the stream's order)
    for `replay`."""

    data: bytes
    ideal_bits: float
    kept: tuple[np.ndarray, np.ndarray, np.ndarray] | None


def encode(
    rgb: np.ndarray, planes: list[PlaneWeights] | None = None, keep: bool = False, version: int = NEWEST
) -> Encoded:
    """An (H, W, 3) uint8 image (or, from format version GREY, an (H, W, 1) one) as one ANS stream
    of format `version`'s layout, its ideal bits and (with `keep`) its symbols' intervals and values."""
    if rgb.shape[2] == 1 and version < GREY:
        raise ValueError(f"causal files of grey images are of format version {GREY} or later")
    planes = load(version=version) if planes is None else planes
    x = planes_of(rgb)
    n, h, w = x.shape
    earlier = pad_planes(x)
    i, j, order, ends = _encoding_order(h, w, n)
    # Every sub-pixel's mixture, plane by plane in wavefront order, then taken in decoding order.
    parts = []
    for k in range(n):
        f, base = features(canvas(x, k), earlier[:k], k, i, j, w)
        values = x[k][i, j]
        if version < ONLINE:
            mixtures = symbols.parts(planes[k].outputs(f), base << FRAC_BITS)
        else:
            hidden, o = planes[k].hidden_outputs(f)
            mixtures = online.adapt(online.start(planes[k], RATE), hidden, o, base << FRAC_BITS, values, ends)
        parts.append((*mixtures, values))
    p, q, mix, sym = (np.concatenate(a)[order] for a in zip(*parts))
    tab, io = symbols.table(), rans.sink(len(sym))
    ideal = 0.0
    for s in range(0, len(sym), SEGMENT):
        part = slice(s, s + SEGMENT)
        freq = symbols.record(tab, p[part], q[part], mix[part], sym[part], io)
        ideal += float(np.sum(PRECISION - np.log2(freq)))
    kept = (io[1].astype(np.int32), io[2].astype(np.int32), sym.astype(np.uint8)) if keep else None
    return Encoded(rans.finish(io, rans.NOTHING).astype("<u4").tobytes(), ideal, kept)


def replay(
    data: bytes, height: int, width: int, kept: tuple[np.ndarray, np.ndarray, np.ndarray], channels: int = 3
) -> np.ndarray:
    """`decode` of a stream `encode` made, with the intervals it kept in place of those the
    decoder builds from its network's mixtures: the encoder's check. Every other step is the
    decoder's (its schedule, its stream: `rans.follow`, the stream decodes to the kept values
    under them); the network's outputs are the decoder's wherever the image decodes exactly,
    since they are exact integers of the decoded cells alone, and the intervals the same
    function of them (`symbols`)."""
    io = _source(data)
    starts, freqs, values = kept
    if not rans.follow(io, starts, freqs):
        raise FormatError("the stream does not decode to the image the encoder coded")
    x = np.zeros((channels, height, width), np.uint8)
    x.ravel()[_decoding_cells(height, width, channels)] = values
    if not rans.exhausted(io):
        raise FormatError("corrupted payload: data left after the last pixel")
    return _pixels_of(x)


def _source(data: bytes) -> tuple:
    """A decoding of an ANS stream's bytes (`rans.source`), or the FormatError that says why not."""
    if len(data) % 4:
        raise FormatError("corrupted payload: ANS stream length is not a multiple of 4")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
    except ValueError as e:
        raise FormatError(f"corrupted payload: {e}") from None
    return rans.source(coder.get_compressed())


def decode(
    data: bytes,
    height: int,
    width: int,
    planes: list[PlaneWeights] | None = None,
    version: int = NEWEST,
    channels: int = 3,
) -> np.ndarray:
    """The (H, W, channels) uint8 image from a stream made by `encode` (with the networks of
    format `version`'s files where `planes` is None)."""
    out = decode_many([data], height, width, planes, version, channels)[0]
    if isinstance(out, FormatError):
        raise out
    return out


def decode_many(
    streams: list[bytes],
    height: int,
    width: int,
    planes: list[PlaneWeights] | None = None,
    version: int = NEWEST,
    channels: int = 3,
) -> list[np.ndarray | FormatError]:
    """`decode` of streams of images of one size, channel count and format version, each image or
    the FormatError that says why not: they decode in lockstep, each step's network run once for
    all of them (on thumbnails the calls, not the sums, take the time)."""
    planes = load(version=version) if planes is None else planes
    wrong = ""
    if height * width > MAX_PIXELS:
        wrong = f"holds at most {MAX_PIXELS} pixels, not {width}x{height}"
    elif channels == 1 and version < GREY:
        wrong = f"of version {version} holds no grey image"
    if wrong:
        return [FormatError(f"corrupted .nfc file: a causal file {wrong}")] * len(streams)
    results: list[np.ndarray | FormatError | None] = [None] * len(streams)
    ios = {}
    for n, data in enumerate(streams):
        try:
            ios[n] = _source(data)
        except FormatError as e:
            results[n] = e
    if ios:
        together = _decode_together(list(ios.values()), height, width, planes[:channels], version >= ONLINE)
        for n, x in zip(ios, together):
            results[n] = (
                x if rans.exhausted(ios[n]) else FormatError("corrupted payload: data left after the last pixel")
            )
    return results


def _decode_together(
    ios: list[tuple], height: int, width: int, planes: list[PlaneWeights], tuned: bool
) -> list[np.ndarray]:
    """The images (H, W, C) uint8 of decoding Ios of one size, in lockstep, C the networks in
    `planes` (3, or green's alone for grey images; with `tuned`, each plane's output layer tuned to
    each image as it decodes: `online`)."""
    count, tab, n_planes = len(ios), symbols.table(), len(planes)
    tunings = [online.start(pw, RATE, count) for pw in planes] if tuned else None
    x = np.zeros((n_planes, count, height, width), np.int64)
    edged = pad_planes(x.reshape(n_planes * count, height, width)).reshape(
        n_planes, count, height + 2 * PAD, width + 2 * PAD
    )
    cvs = [np.stack([canvas(x[:, n], k) for n in range(count)]) for k in range(n_planes)]
    cells = (height + 2 * PAD) * (width + 2 * PAD)  # of each image's canvas
    for step in _schedule(height, width, n_planes):
        outs, bases, sizes, hiddens = [], [], [], []
        for k, i, j in step:
            at = np.repeat(np.arange(count, dtype=np.int64) * cells, len(i))
            f, base = features(cvs[k], edged[:k], k, np.tile(i, count), np.tile(j, count), width, at)
            if tunings is None:
                outs.append(planes[k].outputs(f))
            else:
                hidden, o = planes[k].hidden_outputs(f)
                online.correct(tunings[k], hidden, o)
                outs.append(o)
                hiddens.append(hidden)
            bases.append(base)
            sizes.append(len(i))
        # Rows by plane, then image; each image's stream holds its planes' rows in turn.
        by_image = _by_image(tuple(sizes), count)
        o, base = np.concatenate(outs)[by_image], np.concatenate(bases)[by_image]
        mixtures = symbols.parts(o, base << FRAC_BITS)
        p, q, mix = mixtures
        v = np.empty(len(by_image), np.int64)
        per = sum(sizes)
        for n, io in enumerate(ios):
            part = slice(n * per, (n + 1) * per)
            v[by_image[part]] = symbols.decode(tab, p[part], q[part], mix[part], io)
        if tunings is not None:  # the mixtures back in the planes' order, as the values
            by_plane = [np.empty_like(a) for a in mixtures]
            for a, b in zip(by_plane, mixtures):
                a[by_image] = b
        at = 0
        for n, (k, i, j) in enumerate(step):
            rows = slice(at, at + count * len(i))
            vals = v[rows].reshape(count, len(i))
            if tunings is not None:
                online.learn(tunings[k], hiddens[n], tuple(a[rows] for a in by_plane), vals.ravel())
            cvs[k][:, i + PAD, j + PAD] = edged[k][:, i + PAD, j + PAD] = vals
            at += count * len(i)
            _edge(edged[k], height, width)
            if k == 0:
                for c in cvs[1:]:
                    _outside_from(c, edged[0], height, width)
    x = np.stack([c[:, PAD : PAD + height, PAD : PAD + width] for c in cvs], 1)
    return [_pixels_of(x[n]) for n in range(count)]


@functools.cache
def _by_image(sizes: tuple[int, ...], count: int) -> np.ndarray:
    """The rows of a step (plane after plane, in each `count` images' rows in turn, `sizes` rows
    each) taken image after image, in each plane after plane."""
    starts = np.cumsum((0, *sizes[:-1])) * count
    return np.concatenate(
        [starts[k] + n * size + np.arange(size) for n in range(count) for k, size in enumerate(sizes)]
    ).astype(np.int64)
