"""The adaptive model: the causal model's network reading, besides the decoded neighbours, the
per-image linear model's prediction and scale for each sub-pixel, its mixture centred on that
prediction.

The causal model's fixed weights know photos in general; the linear model's weights, fitted to
the image and sent with it, know this image. The network learns how far to trust the fitted
prediction from its neighbourhood, its scale and the image's size, and gives the distribution.

Order and side information are the linear model's (`linear.model.decode_planes`): channel by
channel (green, red, blue; grey alone), wavefronts in increasing t = 2i + j (from version 20's
network t = 3i + j, `slope_of`), the fitted model first in the stream. A plane's features are
the causal model's (`causal.model.features`: its causal neighbours and the 3x3 window of each
earlier plane, which is decoded everywhere by then) and three more (`extras`); from version
18's network also the fitted prediction's residuals on sub-pixels decoded before
(`put_residuals`), from version 19's further out and their means over windows, from version
20's right of NE. The network is the causal model's
integer arithmetic, grey images take green's network, and files decode alike on every machine.
"""

from __future__ import annotations

__all__ = [
    "MODELS",
    "NEWEST",
    "NEWEST_NETWORK",
    "EXTRA",
    "SPIKELESS",
    "NEIGHBOURS",
    "ACROSS",
    "residual_count",
    "inputs",
    "FAR_NEIGHBOURS",
    "FAR_ACROSS",
    "STEEP_NEIGHBOURS",
    "WINDOW_OWN",
    "WINDOW_ACROSS",
    "RES_PAD",
    "Ring",
    "NEAR",
    "FAR",
    "STEEP",
    "RINGS",
    "NEWEST_RINGS",
    "rings_of",
    "slope_of",
    "residual_planes",
    "settle_residuals",
    "put_residuals",
    "MAX_FRONTS",
    "KEEP_SUBPIXELS",
    "fits",
    "extras",
    "plane_features",
    "load",
    "Kept",
    "Encoded",
    "encode",
    "decode",
]

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import constriction
import numpy as np

from nfcompress.coders.causal import model as causal
from nfcompress.coders.causal import online, symbols
from nfcompress.coders.linear import model as linear
from nfcompress.coding import rans
from nfcompress.coding.primitives import FRAC_BITS, PRECISION, wavefronts
from nfcompress.compiled import compiled
from nfcompress.errors import FormatError
from nfcompress.model_files import PAYLOAD_MODELS, pinned, shipped_dir

# The shipped weights each format version's adaptive files decode with, and their sha256: an
# adaptive file names no model, so its version binds it to exactly these weights.
MODELS = {
    13: (PAYLOAD_MODELS["adaptive"][13], "32ec752baa2eeda86742ec0340c240af25c90efb5c0f1034bdc7d5142a8fd506"),
    14: (PAYLOAD_MODELS["adaptive"][14], "f370b97a0e2b0205464e58fd39294b03004ee681890d69e39d517ac169f16d24"),
    16: (PAYLOAD_MODELS["adaptive"][16], "402b801abf2688206c71e94f0f0045a385795969f690f455779433063e9ab9b2"),
    17: (PAYLOAD_MODELS["adaptive"][17], "b9fb4d9f649f22cf9e9733cd45d6ddfdb6261e74cea7766b1d7ff04096b49c4f"),
    18: (PAYLOAD_MODELS["adaptive"][18], "5a228bfef0c4ead0ff70bd7db85d2bcd5f720d1cb88609dea9a25c81f073c9d7"),
    19: (PAYLOAD_MODELS["adaptive"][19], "ba0110fa32d49e886068e13c542378923f8e430471f53ce99d051723ee57b936"),
    20: (PAYLOAD_MODELS["adaptive"][20], "fabb26cb6999b83e32b62911e89044238a69d26c5a6c9b64c4cce5edbb7cb06d"),
}
# From this format version each plane's output layer is tuned to the image as it codes
# (`causal.online`), with the network of version 20.
ONLINE = 21
RATE = 2e-4  # its steps (`online`), in float weights
NEWEST = 22  # the version new files are written with (container.WRITTEN; 22 is a leaner file)
NEWEST_NETWORK = pinned(MODELS, NEWEST)  # the (name, sha256) of the network new files code with
EXTRA = 3  # features beyond the causal model's: the fitted prediction, its scale code, the image size
# From this format version the side information leaves out the linear model's spike shares,
# which the network does not read (an image of one weight set saves 120 bits, of eight 1,920).
SPIKELESS = 17
# From version 18's network: the fitted prediction's signed residuals (`residual_planes`) where
# the decoder knows them, in rings: at the ring's neighbours (rows, columns) in the plane's own
# causal half and at its places around the pixel in each earlier plane (whole by then); a ring
# with windows also reads each window's mean absolute and mean residual (`WINDOW_OWN`, `WINDOW_ACROSS`).
NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0))
ACROSS = ((0, 0), (0, -1), (-1, 0), (0, 1), (1, 0))
FAR_NEIGHBOURS = ((-1, -2), (-2, -1), (-2, 1), (-2, 2), (0, -3), (-3, 0))
FAR_ACROSS = ((-1, -1), (-1, 1), (1, -1), (1, 1), (0, -2), (-2, 0), (0, 2), (2, 0))
# From version 20's network: own-plane cells right of NE that wavefronts of slope 3 decode first
# (`slope_of`); slope 2's wavefronts decode (-1, 2) with the sub-pixel itself.
STEEP_NEIGHBOURS = ((-1, 2), (-2, 3))
# Own-plane cells decoded before the sub-pixel (on an earlier wavefront: 2 rows + columns < 0)
# within 4 rows up and 4 columns either side; an earlier plane's 5x5 around the pixel.
WINDOW_OWN = tuple((di, dj) for di in range(-4, 1) for dj in range(-4, 5) if 2 * di + dj < 0)
WINDOW_ACROSS = tuple((di, dj) for di in range(-2, 3) for dj in range(-2, 3))
RES_PAD = 4  # the residual planes' padding: the windows reach 4 cells out
OFFSET_LIMIT = 1000  # the fitted prediction's offset from the median predictor, in 1/16, is clipped to this
SEGMENT = 4096  # sub-pixels whose features and distributions are built at once when encoding
# The most wavefronts (2 (H - 1) + W) of an image it codes: the network runs once per wavefront
# and channel, so a thin strip of few pixels costs as much as a large photo (an 8192x4096 image
# has 16,382). Others are left to the linear model, and a decoder refuses them.
MAX_FRONTS = 1 << 14
# The most sub-pixels whose intervals `encode` keeps for the encoder's check (`Kept`: 9 bytes each).
KEEP_SUBPIXELS = 1 << 26


def fits(height: int, width: int) -> bool:
    """Whether the adaptive model codes an image of this size (not too many wavefronts)."""
    return 2 * (height - 1) + width <= MAX_FRONTS


def extras(p: np.ndarray, scale: np.ndarray, base: np.ndarray, pixels: int) -> np.ndarray:
    """The integer features (n, EXTRA) of sub-pixels whose fitted predictions are p (weight units),
    scale codes `scale` and median predictions `base`, in an image of `pixels` pixels."""
    out = np.empty((len(p), EXTRA), np.int64)
    _put_extras(out, 0, np.asarray(p, np.int64), np.asarray(scale, np.int64), np.asarray(base, np.int64), pixels)
    return out


@compiled
def _put_extras(f: np.ndarray, col: int, p: np.ndarray, scale: np.ndarray, base: np.ndarray, pixels: int) -> None:
    """`extras` into columns col, col + 1 and col + 2 of f: the fitted prediction's offset from
    the median prediction (in 1/16, clipped), the scale code less 128, the image's size."""
    size = 8 * (_bit_length(pixels) - 1) - 96
    for a in range(p.size):
        f[a, col] = min(max((p[a] - (base[a] << FRAC_BITS)) >> (FRAC_BITS - 4), -OFFSET_LIMIT), OFFSET_LIMIT)
        f[a, col + 1] = scale[a] - 128
        f[a, col + 2] = size


@compiled
def _bit_length(n: int) -> int:
    """int.bit_length of a positive n."""
    k = 0
    while n > 0:
        n >>= 1
        k += 1
    return k


class Ring(NamedTuple):
    """Residuals a network reads: of its own plane at `own` (rows, columns), of each earlier plane
    at `across`, and with `windows` the mean absolute and mean residual of each window."""

    own: np.ndarray  # (n, 2) int64
    across: np.ndarray
    windows: bool

    def count(self, k: int) -> int:
        """How many features this ring gives plane k."""
        return len(self.own) + k * len(self.across) + 2 * (k + 1) * self.windows


def _ring(own: tuple, across: tuple, windows: bool) -> Ring:
    return Ring(np.array(own, np.int64).reshape(-1, 2), np.array(across, np.int64).reshape(-1, 2), windows)


NEAR, FAR = _ring(NEIGHBOURS, ACROSS, False), _ring(FAR_NEIGHBOURS, FAR_ACROSS, True)
STEEP = _ring(STEEP_NEIGHBOURS, (), False)
# The rings of each network that reads residuals, by the format version it came with: a network's
# first layer says which it reads (`rings_of`), and they the order its files take (`slope_of`).
RINGS = {18: (NEAR,), 19: (NEAR, FAR), 20: (NEAR, FAR, STEEP)}
NEWEST_RINGS = RINGS[max(RINGS)]  # what a network trained now reads
_WINDOW_OWN_AT, _WINDOW_ACROSS_AT = np.array(WINDOW_OWN, np.int64), np.array(WINDOW_ACROSS, np.int64)


def residual_count(k: int, rings: tuple[Ring, ...] = NEWEST_RINGS) -> int:
    """How many fitted residuals plane k's network reads in `rings` (by default the newest network's)."""
    return sum(r.count(k) for r in rings)


def inputs(k: int, rings: tuple[Ring, ...] = NEWEST_RINGS) -> int:
    """How many features plane k's network reads: the causal model's, the extras, the residuals
    of `rings` (by default the newest network's)."""
    return causal.feature_count(k) + EXTRA + residual_count(k, rings)


def rings_of(planes: list[causal.PlaneWeights]) -> tuple[Ring, ...]:
    """The residuals networks read, which their first layer's size tells (none before version 18)."""
    for rings in RINGS.values():
        if planes[0].first.shape[0] == inputs(0, rings):
            return rings
    return ()


def slope_of(rings: tuple[Ring, ...]) -> int:
    """The slope of the wavefronts (`wavefronts`) a network reading `rings` codes in: the least, at
    least 2, under which every own-plane cell it reads lies on an earlier wavefront."""
    return max([2] + [dj // -di + 1 for r in rings for di, dj in r.own.tolist() if di < 0])


def residual_planes(x: np.ndarray, predictions: list[np.ndarray]) -> np.ndarray:
    """Padded planes (C, H + 2 RES_PAD, W + 2 RES_PAD) of each sub-pixel's residual from its fitted
    prediction (weight units, raster order), in 1/16 and clipped to OFFSET_LIMIT, 0 outside the
    image: what the network reads of the planes `x` (C, H, W) once decoded."""
    c, h, w = x.shape
    # int16 holds every residual (at most OFFSET_LIMIT): a 12 MP photo's planes take 73 MB.
    out = np.zeros((c, h + 2 * RES_PAD, w + 2 * RES_PAD), np.int16)
    columns = np.arange(w, dtype=np.int64)
    for k in range(c):
        values, p = np.asarray(x[k], np.int64), np.asarray(predictions[k], np.int64).reshape(h, w)
        for r in range(h):  # a row at a time: no index arrays the size of a large photo
            settle_residuals(out, k, np.full(w, r, np.int64), columns, values[r], p[r])
    return out


@compiled
def settle_residuals(res: np.ndarray, k: int, i: np.ndarray, j: np.ndarray, x: np.ndarray, p: np.ndarray) -> None:
    """The residuals of plane k's values x (int64) at rows i, columns j from their fitted predictions
    p (int64, weight units), in 1/16 and clipped, into the padded residual planes `res`: the
    encoder's whole planes (`residual_planes`) and the decoder's wavefront at a time alike."""
    for a in range(i.size):
        r = (x[a] << 4) - (p[a] >> (FRAC_BITS - 4))
        res[k, i[a] + RES_PAD, j[a] + RES_PAD] = min(max(r, -OFFSET_LIMIT), OFFSET_LIMIT)


def put_residuals(
    f: np.ndarray, res: np.ndarray, k: int, i: np.ndarray, j: np.ndarray, rings: tuple[Ring, ...] = NEWEST_RINGS
) -> None:
    """Fill f's last `residual_count(k, rings)` columns from the residual planes `res`
    (`residual_planes`, at least k + 1 of them) for plane k's sub-pixels at rows i, columns j."""
    col, flat = f.shape[1] - residual_count(k, rings), res.reshape(len(res), -1)
    h, w = res.shape[1] - 2 * RES_PAD, res.shape[2] - 2 * RES_PAD
    for r in rings:
        _put_ring(f, col, flat, h, w, k, i, j, r.own, r.across, r.windows, _WINDOW_OWN_AT, _WINDOW_ACROSS_AT)
        col += r.count(k)


@compiled
def _put_ring(
    f: np.ndarray,
    col: int,
    res: np.ndarray,
    h: int,
    w: int,
    k: int,
    i: np.ndarray,
    j: np.ndarray,
    own: np.ndarray,
    across: np.ndarray,
    windows: bool,
    window_own: np.ndarray,
    window_across: np.ndarray,
) -> None:
    """One ring of `put_residuals` from col on, over flat padded planes `res` of an H x W image."""
    cw = w + 2 * RES_PAD
    n, m = len(own), len(across)
    for a in range(len(i)):
        at = (i[a] + RES_PAD) * cw + j[a] + RES_PAD
        for c in range(n):
            f[a, col + c] = res[k, at + own[c, 0] * cw + own[c, 1]]
        for q in range(k):
            for c in range(m):
                f[a, col + n + q * m + c] = res[q, at + across[c, 0] * cw + across[c, 1]]
        if not windows:
            continue
        c0 = col + n + k * m
        for q in range(k + 1):
            cells = window_own if q == k else window_across
            total = signed = count = 0
            for c in range(len(cells)):
                y, x = i[a] + cells[c, 0], j[a] + cells[c, 1]
                if 0 <= y < h and 0 <= x < w:
                    v = np.int64(res[q, at + cells[c, 0] * cw + cells[c, 1]])
                    total += abs(v)
                    signed += v
                    count += 1
            count = max(count, 1)
            # The own plane's window first, then each earlier plane's; floored means.
            slot = c0 if q == k else c0 + 2 + 2 * q
            f[a, slot] = total // count
            f[a, slot + 1] = signed // count


def plane_features(
    cv: np.ndarray,
    earlier: np.ndarray,
    k: int,
    i: np.ndarray,
    j: np.ndarray,
    w: int,
    p: np.ndarray,
    scale: np.ndarray,
    pixels: int,
    res: np.ndarray | None = None,
    rings: tuple[Ring, ...] = NEWEST_RINGS,
) -> np.ndarray:
    """The integer features of plane k's sub-pixels at rows i, columns j: `causal.features` of its
    canvas and the earlier planes, then `extras`, then with residual planes `res` the residuals
    of `rings` (`put_residuals`): causal.feature_count(k) + EXTRA (+ residual_count(k, rings)) columns."""
    more = 0 if res is None else residual_count(k, rings)
    f, base = causal.features(cv, earlier, k, i, j, w, extra=EXTRA + more)
    _put_extras(f, f.shape[1] - EXTRA - more, np.asarray(p, np.int64), np.asarray(scale, np.int64), base, pixels)
    if res is not None:
        put_residuals(f, res, k, np.asarray(i, np.int64), np.asarray(j, np.int64), rings)
    return f


def load(path: Path | None = None, sha256: str | None = None, version: int = NEWEST) -> list[causal.PlaneWeights]:
    """The integer networks of green, red and blue: by default the shipped ones of format `version`'s
    files, checked against their sha256 in MODELS; others against `sha256` or the card beside them."""
    if path is None:
        name, sha256 = pinned(MODELS, version)
        path = shipped_dir() / f"{name}.safetensors"
    return causal.load(Path(path), sha256, "adaptive model")


class Kept(NamedTuple):
    """What `encode` kept for `decode` to check its stream without the network: each channel's
    symbols' intervals in the stream and values (starts, frequencies and values, in coding
    order), and the fitted predictions and scale codes (raster order) its network read."""

    intervals: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    predictions: list[np.ndarray]
    scales: list[np.ndarray]
    slope: int  # of the wavefronts it coded in (`slope_of` its network's rings, the decoder's too)


class Encoded(NamedTuple):
    """An image's stream (`encode`), the ideal bits of each pixel (H, W) and of the side
    information, and what the encoder kept to check it (`Kept`, where asked for)."""

    data: bytes
    pixel_bits: np.ndarray
    side_bits: float
    kept: Kept | None


def _planes(colour: np.ndarray) -> np.ndarray:
    """Colour planes (C, H, W) int64 in coding order."""
    return np.ascontiguousarray(colour[..., linear.coding_order(colour.shape[2])].transpose(2, 0, 1)).astype(np.int64)


def encode(
    colour: np.ndarray,
    planes: list[causal.PlaneWeights] | None = None,
    fit: linear.Fitted | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: bool = False,
    threads: int = 1,
    version: int = NEWEST,
) -> Encoded:
    """An (H, W, C) uint8 image (C = 1 or 3) as one ANS stream of format `version`'s layout, over
    the linear model fitted to it (`fit`: `linear.fitted`, or fitted now); with `keep`, its
    mixtures for the check (`Kept`, on images of at most KEEP_SUBPIXELS); channels on up to
    `threads` threads (the same bytes); `progress(done, C)` is called after each channel."""
    planes = load(version=version) if planes is None else planes
    fit = linear.fitted(colour) if fit is None else fit
    x = _planes(colour)
    channels, h, w = x.shape
    rings = rings_of(planes)
    slope = slope_of(rings)
    fronts = list(wavefronts(h, w, slope))
    order = np.concatenate([i * w + j for i, j in fronts])
    ends = np.cumsum([len(i) for i, _ in fronts])
    cuts = _segments(ends)
    tuned = version >= ONLINE
    earlier = causal.pad_planes(x)
    res = residual_planes(x, [fit.predictions(c) for c in range(channels)]) if rings else None
    tab = symbols.table()
    ideal, words = np.zeros(h * w), rans.NOTHING
    keep = keep and x.size <= KEEP_SUBPIXELS
    kept: list = [None] * channels

    def channel(c: int) -> tuple[tuple, np.ndarray, tuple]:
        """Channel c's recorded symbols, their bits and (with `keep`) their intervals and values,
        in coding order."""
        cv, preds, scales = causal.canvas(x, c), fit.predictions(c), fit.scale_codes(c)
        io, bits, values = rans.sink(h * w), np.empty(h * w), x[c].ravel()[order]
        tuning = online.start(planes[c], RATE) if tuned else None
        for s, e in zip(cuts[:-1], cuts[1:]):
            at = order[s:e]
            i, j = np.divmod(at, w)
            p = preds[at].astype(np.int64)
            f = plane_features(cv, earlier[:c], c, i, j, w, p, scales[at], h * w, res, rings)
            if tuning is None:
                mixtures = symbols.parts(planes[c].outputs(f), p)
            else:
                hidden, o = planes[c].hidden_outputs(f)
                mixtures = online.adapt(tuning, hidden, o, p, values[s:e], ends[(ends > s) & (ends <= e)] - s)
            bits[s:e] = PRECISION - np.log2(symbols.record(tab, *mixtures, values[s:e], io))
        mine = (io[1].astype(np.int32), io[2].astype(np.int32), values.astype(np.uint8)) if keep else ()
        return io, bits, mine

    # Channel after channel from the last, each on top of the next one's words (the decoder pops
    # channel 0 first). On one thread one or two channels' symbols are held at once; on threads
    # every channel's (24 bytes a pixel each), so only on images of at most KEEP_PIXELS (on a 12 MP
    # photo the threads saved 4% of its time).
    last_first = list(reversed(range(channels)))
    threads = min(threads, channels) if linear.THREADS_FROM <= h * w <= linear.KEEP_PIXELS else 1
    with ThreadPoolExecutor(threads) if threads > 1 else contextlib.nullcontext() as pool:
        for c, (io, bits, mine) in zip(last_first, pool.map(channel, last_first) if pool else map(channel, last_first)):
            words = rans.finish(io, words)
            ideal[order] += bits
            kept[c] = mine
            if progress:
                progress(channels - c, channels)
    coder = constriction.stream.stack.AnsCoder(words) if len(words) else constriction.stream.stack.AnsCoder()
    spikes = version < SPIKELESS
    linear.push_side(coder, fit.model, spikes)
    data = coder.get_compressed().astype("<u4").tobytes()
    made = None
    if keep:
        made = Kept(
            kept, [fit.predictions(c) for c in range(channels)], [fit.scale_codes(c) for c in range(channels)], slope
        )
    return Encoded(data, ideal.reshape(h, w), linear.side_bits(fit.model, spikes), made)


def _segments(ends: np.ndarray) -> np.ndarray:
    """Where the encoder's segments begin and end in coding order: at wavefront ends (`ends`,
    cumulative), each of at least SEGMENT sub-pixels but the last."""
    cuts, last = [0], 0
    for e in ends:
        if e - last >= SEGMENT or e == ends[-1]:
            cuts.append(int(e))
            last = e
    return np.array(cuts, np.int64)


def decode(
    data: bytes,
    height: int,
    width: int,
    channels: int,
    planes: list[causal.PlaneWeights] | None = None,
    progress: Callable[[int, int], None] | None = None,
    kept: Kept | None = None,
    version: int = NEWEST,
) -> np.ndarray:
    """The (H, W, C) uint8 image from a stream made by `encode` (with the networks of format
    `version`'s files where `planes` is None); `progress(done, total)` as the linear model's
    decoder calls it.

    With `kept` (the encoder's `Kept` of this image), the encoder checks its stream: every step
    is the decoder's but the network and the weights built from its mixture, whose intervals in
    the stream it takes from `kept` (`rans.follow`: the stream decodes to the kept values under
    them). They are the ones the decoder builds: its network's inputs are the fitted predictions
    and scale codes, checked here to be those of the decoder's linear model, and the decoded
    neighbours (only cells decoded before are read), which are the image's where the image
    decodes exactly; the weights are the same function of its outputs (`symbols`)."""
    planes = load(version=version) if planes is None and kept is None else planes
    if not fits(height, width):
        raise FormatError(f"corrupted .nfc file: an adaptive file holds no {width}x{height} image (a thin strip)")
    if len(data) % 4:
        raise FormatError("corrupted payload: ANS stream length is not a multiple of 4")
    if height * width * channels * linear.MIN_BITS > 8 * len(data) + 64:
        raise FormatError(f"corrupted .nfc file: {len(data)} bytes cannot hold a {width}x{height} image")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
    except ValueError as e:
        raise FormatError(f"corrupted payload: {e}") from None
    model = linear.pop_side(coder, channels, linear.SCHEME, version < SPIKELESS)
    if any((q < 0).any() or (q > 255).any() for q in model.scales):
        raise FormatError("corrupted payload: a scale code out of range")
    io = rans.source(coder.get_compressed())  # the pixels: the compiled coder goes on from here
    tab = symbols.table()
    x = np.zeros((channels, height, width), np.int64)
    rings = () if kept is not None else rings_of(planes)
    res = np.zeros((channels, height + 2 * RES_PAD, width + 2 * RES_PAD), np.int16) if rings else None
    state: dict = {}
    tuned = kept is None and version >= ONLINE
    slope = slope_of(rings) if kept is None else kept.slope
    tunings = [online.start(planes[c], RATE) for c in range(channels)] if tuned else None

    # What the decoder's linear model says of each sub-pixel, compared with what the encoder's
    # network read once the image is decoded (one comparison, not one per wavefront).
    said = [
        (np.empty(height * width, np.int64), np.empty(height * width, np.int64))
        for _ in range(channels if kept is not None else 0)
    ]

    def replay(f: linear.Front) -> np.ndarray:
        s = state.setdefault(f.c, 0)
        at = f.i * width + f.j
        said[f.c][0][at], said[f.c][1][at] = f.p, model.scales[f.c][f.contexts]
        state[f.c] = e = s + len(at)
        starts, freqs, values = kept.intervals[f.c]
        if not rans.follow(io, starts[s:e], freqs[s:e]):
            raise FormatError("the stream does not decode to the image the encoder coded")
        return values[s:e].astype(np.int64)

    def values(f: linear.Front) -> np.ndarray:
        if state.get("plane") != f.c:  # the earlier planes are whole from here on
            state.update(plane=f.c, cv=causal.canvas(x, f.c), earlier=causal.pad_planes(x[: f.c]))
        cv = state["cv"]
        feats = plane_features(
            cv, state["earlier"], f.c, f.i, f.j, width, f.p, model.scales[f.c][f.contexts], height * width, res, rings
        )
        if tunings is None:
            v = symbols.decode(tab, *symbols.parts(planes[f.c].outputs(feats), f.p), io)
        else:
            hidden, o = planes[f.c].hidden_outputs(feats)
            online.correct(tunings[f.c], hidden, o)
            mixtures = symbols.parts(o, f.p)
            v = symbols.decode(tab, *mixtures, io)
            online.learn(tunings[f.c], hidden, mixtures, v)
        cv[f.i + causal.PAD, f.j + causal.PAD] = x[f.c, f.i, f.j] = v
        if res is not None:
            settle_residuals(res, f.c, f.i, f.j, v, f.p)
        return v

    out = linear.decode_planes(
        model, height, width, channels, values if kept is None else replay, progress, slope=slope
    )
    if not rans.exhausted(io):
        raise FormatError("corrupted payload: data left after the last pixel")
    if kept is not None and not all(
        np.array_equal(p, kept.predictions[c]) and np.array_equal(q, kept.scales[c]) for c, (p, q) in enumerate(said)
    ):
        raise FormatError("the decoder's fitted predictions differ from the encoder's")
    return out
