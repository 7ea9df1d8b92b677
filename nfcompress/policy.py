"""Which model codes an image: the table of when auto tries each, and the lines that read it.

Auto keeps the smallest file of the models it tries, the first in AUTO's order on a tie. The
figures below were measured on val photos and thumbnails (docs/history.md): each rule saves
encode time where a model rarely wins, and bytes only where it wins by little (the flow: see
FLOW_FROM_EFFORT).

| model  | auto tries it                                                                        |
|--------|--------------------------------------------------------------------------------------|
| flow   | at effort FLOW_FROM_EFFORT and over, where its model has an exact integer form       |
| linear | fitted to every image but, at effort 1, those the causal model codes of at most      |
|        | LINEAR_SMALL pixels; its payload made where the fit's estimate of it is under        |
|        | LINEAR_REACH x the smallest of the other models' (the adaptive model's first)        |
| adapt. | wherever the linear model is but on thin strips, over the same fit; not where the    |
|        | linear model's estimated payload is ADAPTIVE_REACH x the causal model's or more,     |
|        | nor where the causal model codes an image of at most ADAPTIVE_SMALL pixels           |
| jpeg   | with the linear model, where the image shows a JPEG's quantizer steps (from 64x64);  |
|        | under JPEG_SURE x the linear model's bits on the central crop, the linear model is   |
|        | not tried; and before the screen model on images it would try that are over          |
|        | SCREEN_ALONE_FROM pixels of over SCREEN_COLOURS colours (at effort 1), where then no |
|        | other model is tried                                                                 |
| causal | on colour and grey images of at most 128x128 that are not thin strips                |
| screen | first, on images where SCREEN_FROM of the pixels or more repeat a neighbour; on     |
|        | those over SCREEN_ALONE_FROM pixels where its file is under SCREEN_SURE bits per     |
|        | sub-pixel or that have at most SCREEN_COLOURS colours, no other model is tried       |
"""

__all__ = [
    "AUTO",
    "CODERS",
    "DEFAULT_EFFORT",
    "EFFORTS",
    "MODEL_FREE",
    "JPEG_SURE",
    "ADAPTIVE_REACH",
    "ADAPTIVE_SMALL",
    "LINEAR_SMALL",
    "LINEAR_REACH",
    "FLOW_FROM_EFFORT",
    "check_coder",
    "check_effort",
    "encode",
    "encode_auto",
    "encode_causal",
    "encode_screen",
    "encode_linear_or_jpeg",
    "jpeg_if_sure",
    "JpegTry",
]

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from nfcompress.coders.adaptive import AdaptiveCoder
from nfcompress.coders.adaptive.model import MAX_FRONTS
from nfcompress.coders.base import Payload, Progress
from nfcompress.coders.causal import CausalCoder
from nfcompress.coders.flow.orientation import DEFAULT_EFFORT, EFFORTS, candidates
from nfcompress.coders.jpeg import JpegCoder
from nfcompress.coders.linear import LinearCoder
from nfcompress.coders.linear import model as linear_model
from nfcompress.coders.screen import ScreenCoder
from nfcompress.coders.screen.content import colour_count, repeat_share
from nfcompress.errors import NfcError
from nfcompress.threads import share

if TYPE_CHECKING:
    from nfcompress.coders.flow import FlowCoder

# The models that need no weights of the user's choosing, by the payload kind each writes and
# reads; the flow is the codec's (it is bound to a model and a device). A new model: its
# package in nfcompress/coders, and its line here and in AUTO.
MODEL_FREE = {c.kind: c for c in (LinearCoder(), JpegCoder(), CausalCoder(), ScreenCoder(), AdaptiveCoder())}
AUTO = ("screen", "flow", "linear", "adaptive", "jpeg", "causal")
# The choices of --coder: auto, or the models one choice codes with.
CODERS = ("auto", "flow", "linear", "adaptive", "causal", "screen")

JPEG_SURE = 0.8
# Screen content: most pixels repeat a neighbour (screenshots 0.45-1, half of them over 0.96;
# photos 0.18 in the median); the screen model codes it 5-10 times faster than the photo models.
SCREEN_FROM, SCREEN_SURE = 0.4, 0.2  # share of repeating pixels, bits per sub-pixel
# The photo models are tried too on images of at most SCREEN_ALONE_FROM pixels (thumbnails, where
# the causal model often wins), and, where the screen model's file is over SCREEN_SURE bits per
# sub-pixel, on grey ones and on colour ones of more than SCREEN_COLOURS colours (photos with flat
# regions, photos inside screenshots): of 117 val photos that repeat enough for the screen model,
# none then came out larger than before (the colour ones over 128x128 have 9,991 colours or more);
# of the screenshots with 1,025 to 4,096 colours, none codes smaller by a photo model.
SCREEN_ALONE_FROM, SCREEN_COLOURS = 128 * 128, 4096
# Auto tries the flow from effort FLOW_FROM_EFFORT: at effort 1 (0.14) it coded 5 of the bench's
# 200 32x32 thumbnails, each by 0.3-0.75% over the next model (0.017% of the folder), and no
# larger image, nor any of the val and held-out photos; loading it takes 1.6 s a process, and
# one thumbnail's run 80% of its encode. Without it the linear and adaptive models are tried on
# small thumbnails too (they were only where the flow's file was over 3 bpsp): that folder came
# out 0.06% smaller, a lone thumbnail encodes 3.3x faster, a folder of them (coded together, the
# flow in shared runs) 30% slower.
FLOW_FROM_EFFORT = 2
# Where the linear model's payload is this many times the causal model's or more, the adaptive
# model is not tried: of 810 thumbnails, native 64x64 crops and small screen images, it won
# where that ratio was 0.99-1.09; 170 of them were over 1.12, and none of them changed. (The
# adaptive model came out 0.86-1.0x the linear model's size; 1.12 x 0.86 = 0.96 is the worst.)
ADAPTIVE_REACH = 1.12
# Nor on images the causal model codes of at most ADAPTIVE_SMALL pixels, where its side
# information weighs most: of 200 32x32 thumbnails, 100 native 32x32 crops and 160 32x32 crops
# and box-downscalings of screenshots, it won 3 (by under 1%; those folders 0.006%, 0.005% and
# 0% larger without it), while it was tried on 241. At 48x48 it won 23 of 100 thumbnails. Of 100
# grey 32x32 thumbnails (the causal model's from 0.29) the causal file was the smallest of the
# three models' on every one; of 100 grey 64x64 ones the adaptive model's on 13.
ADAPTIVE_SMALL = 32 * 32
# Nor, at effort 1, is the linear model on images of at most LINEAR_SMALL pixels the causal model
# codes: against the first causal network, of 200 32x32 thumbnails it won 4, by 1.0-6.5% (the
# folder 0.077% larger without it), of 100 native 32x32 crops and 80 32x32 screen crops 1, while
# its fit took 40% of a thumbnail's encode; against the second network it still wins those 4
# thumbnails, by 0.3-4.9% (the folder 0.055% larger without it).
LINEAR_SMALL = 32 * 32
# The linear model's payload is made only where the fit's estimate of it (`estimated_bits`) is under
# this many times the smallest of the others (the adaptive, causal and JPEG-history models'). The
# estimate came within -0.5..+0.8% of the payload on thumbnails, 0.2% on photos, +3% on screenshots
# and +4.5% on 32x32 screen crops. Of 617 images (thumbnails, native crops, clean and grey photos,
# screen crops, screenshots, graphics), 1.02 left it out of 444 (of 12 clean photos, 7) and made
# one file larger (a 32x32 screen crop, by 4 bytes); 1.03 out of 412 (4 photos), none larger;
# 1.01 out of 477 (9 photos), the same one larger.
LINEAR_REACH = 1.02


def check_effort(effort: int) -> int:
    """An effort, checked (1 to 3)."""
    try:
        candidates(effort, square=True)
    except ValueError as e:
        raise NfcError(str(e)) from None
    return effort


def check_coder(coder: str) -> str:
    """A --coder choice, checked."""
    if coder not in CODERS:
        raise NfcError(f"unknown coder {coder!r} (one of {', '.join(CODERS)})")
    return coder


def encode_linear_or_jpeg(
    colour: np.ndarray,
    progress: Progress = None,
    jpeg_too: bool = True,
    adaptive_too: bool = False,
    rival: Payload | None = None,
    tried: "JpegTry | None" = None,
) -> Payload | None:
    """The linear model's payload, or the JPEG-history model's where the image shows a JPEG and
    that codes smaller (with `jpeg_too`), or the adaptive model's over the same fit where that
    codes smaller (with `adaptive_too`, and where the linear model's payload is about under
    ADAPTIVE_REACH x the `rival`'s, the causal model's, on images over ADAPTIVE_SMALL pixels).
    The linear model's payload is made only where its bits, as the fit estimates them, are under
    LINEAR_REACH x every other payload's (None where the `rival`'s is then the smallest).
    `tried`: what `jpeg_if_sure` made of the image already."""
    linear = MODEL_FREE["linear"]
    sure, from_jpeg = tried or jpeg_if_sure(colour, progress, jpeg_too)
    if sure is not None:
        return sure
    adaptive_too = adaptive_too and MODEL_FREE["adaptive"].accepts(*colour.shape)
    more = colour.shape[2] if adaptive_too else 0  # the adaptive model reports once per channel
    # The linear model reports twice a channel (fitted, coded), the fit the first half of that.
    whole = 2 * colour.shape[2] + more
    fit = linear_model.fitted(colour, threads=share(), progress=progress and (lambda done, _: progress(done, whole)))
    guess = linear_model.estimated_bits(colour, fit) / 8
    if adaptive_too and rival is not None:
        small = colour.shape[0] * colour.shape[1] <= ADAPTIVE_SMALL
        adaptive_too = not small and guess < ADAPTIVE_REACH * len(rival.chunks[0])
    adaptive, reported = None, False
    if adaptive_too:
        steps = progress and (lambda done, _: progress(colour.shape[2] + done, whole))
        adaptive = MODEL_FREE["adaptive"].encode(colour, steps, fit=fit)
    others = [len(p.chunks[0]) for p in (adaptive, rival, from_jpeg) if p is not None]
    coded = None
    if not others or guess < LINEAR_REACH * min(others):
        # The linear model's coding reports where no other model has (its reports end at `whole`).
        reported = adaptive is None and not more
        steps = progress and (lambda done, _: progress(done, whole)) if reported else None
        coded = linear.encode(colour, steps, fit=fit)
    if progress and not reported:
        progress(whole, whole)
    best = min((p for p in (coded, adaptive, from_jpeg) if p is not None), key=lambda p: len(p.chunks[0]), default=None)
    return _spread(best, colour) if best is not None and best is from_jpeg else best


class JpegTry(NamedTuple):
    """What the JPEG-history model made of an image (`jpeg_if_sure`)."""

    sure: Payload | None  # its payload where it is sure to beat the linear model, else None
    payload: Payload | None  # its payload, None where the image shows no JPEG


def jpeg_if_sure(colour: np.ndarray, progress: Progress = None, jpeg_too: bool = True) -> JpegTry:
    """The JPEG-history model's payload (with `jpeg_too`), and whether it is sure to beat the
    linear model: its central crop under JPEG_SURE x the linear model's bits there."""
    linear, jpeg = MODEL_FREE["linear"], MODEL_FREE["jpeg"]
    survey = jpeg.survey(colour, progress) if jpeg_too and jpeg.accepts(*colour.shape) else None
    from_jpeg = jpeg.encode(colour, survey=survey) if survey else None
    if from_jpeg is not None and survey.crop_bits < JPEG_SURE * linear.encode(survey.crop).ideal_bits:
        if progress:
            progress(4, 4)
        return JpegTry(_spread(from_jpeg, colour), from_jpeg)
    return JpegTry(None, from_jpeg)


def _spread(p: Payload, colour: np.ndarray) -> Payload:
    """A payload with its bits spread evenly over the pixels (a model that gives none per pixel)."""
    p.pixel_bits = np.full(colour.shape[:2], p.ideal_bits / colour[..., 0].size)
    return p


def encode_causal(colour: np.ndarray) -> Payload | None:
    """The causal model's payload, or None where it does not apply."""
    causal = MODEL_FREE["causal"]
    return causal.encode(colour) if causal.accepts(*colour.shape) else None


def encode(
    colours: list[np.ndarray],
    subpixels: list[int],
    coder: str,
    effort: int,
    flow: Callable[[], "FlowCoder"],
    size: Callable[[int, Payload], int],
    progress: Progress = None,
) -> list[Payload]:
    """Each image's payload by a --coder choice: auto (`encode_auto`) or one model. `flow()` gives
    the flow coder (loading it: only the choices that may need it call it)."""
    one = progress if len(colours) == 1 else None  # the linear model reports on a lone image
    if coder == "linear":
        return [encode_linear_or_jpeg(c, one) for c in colours]
    if coder == "causal":
        return [encode_causal(c) or _refuse_causal(c) for c in colours]
    if coder == "screen":
        return [MODEL_FREE["screen"].encode(c) for c in colours]
    if coder == "adaptive":
        adaptive = MODEL_FREE["adaptive"]
        return [adaptive.encode(c) if adaptive.accepts(*c.shape) else _refuse_adaptive(c) for c in colours]
    if coder == "flow":
        return flow().encode_many(colours, progress, effort)
    return _auto(colours, subpixels, effort, flow, size, progress)


def _auto(
    colours: list[np.ndarray],
    subpixels: list[int],
    effort: int,
    flow: Callable[[], "FlowCoder"],
    size: Callable[[int, Payload], int],
    progress: Progress,
) -> list[Payload]:
    """Auto: the screen model first where pixels repeat (but for the JPEG-history model where it
    is sure, at effort 1, on such images over SCREEN_ALONE_FROM pixels of many colours), then the
    photo models (`encode_auto`) on every image where it is not sure to win; the smallest
    payload of each."""
    one = progress if len(colours) == 1 else None
    # The screen model takes seconds a megapixel and codes no photo the JPEG-history model is
    # sure of: it was tried on 4 of the 14 val photos up to 1.1 MP and at 15.9 MP (all once
    # JPEGs), and took 11 s of the largest one's 37 s. Where it may code alone (few colours),
    # it comes first as before: a screenshot the survey mistakes for a JPEG took it 5 s.
    repeats = [repeat_share(c) >= SCREEN_FROM for c in colours]
    many = [
        r and _pixels(c) > SCREEN_ALONE_FROM and c.shape[2] == 3 and colour_count(c) > SCREEN_COLOURS
        for c, r in zip(colours, repeats)
    ]
    tried = [jpeg_if_sure(c, one) if m else None for c, m in zip(colours, many)]
    first = [t.sure if t is not None and effort < FLOW_FROM_EFFORT else None for t in tried]
    screen = [encode_screen(c, r) if f is None else None for c, r, f in zip(colours, repeats, first)]
    rest = [
        i
        for i, (c, s, f) in enumerate(zip(colours, screen, first))
        if f is None and (s is None or not _screen_alone(c, 8 * size(i, s) < SCREEN_SURE * subpixels[i], many[i]))
    ]
    out = [f if f is not None else s for f, s in zip(first, screen)]
    if not rest:
        return out
    coder = flow() if effort >= FLOW_FROM_EFFORT else None
    if coder is not None:
        coder.check_named()  # its files would point decoders at the shipped model
    chosen = encode_auto(
        [colours[i] for i in rest],
        coder if coder is not None and coder.portable else None,
        effort,
        lambda k, p: size(rest[k], p),
        progress,
        [tried[i] for i in rest],
    )
    for k, i in enumerate(rest):
        out[i] = chosen[k] if screen[i] is None else _smallest(i, [screen[i], chosen[k]], size)
    return out


def _pixels(colour: np.ndarray) -> int:
    """An image's pixel count."""
    return colour.shape[0] * colour.shape[1]


def _screen_alone(colour: np.ndarray, small: bool, many: bool) -> bool:
    """Whether the screen model's payload is kept without trying the photo models: on images
    over SCREEN_ALONE_FROM pixels whose file is `small` (under SCREEN_SURE bpsp) or, in colour,
    that have at most SCREEN_COLOURS colours (not `many`)."""
    if _pixels(colour) <= SCREEN_ALONE_FROM:
        return False
    return small or (colour.shape[2] == 3 and not many)


def encode_screen(colour: np.ndarray, repeats: bool | None = None) -> Payload | None:
    """The screen model's payload where the image looks like screen content (SCREEN_FROM of its
    pixels or more repeat a neighbour: `repeats`, where the caller measured it), else None."""
    repeats = repeat_share(colour) >= SCREEN_FROM if repeats is None else repeats
    return MODEL_FREE["screen"].encode(colour) if repeats else None


def _refuse_causal(colour: np.ndarray) -> Payload:
    h, w, c = colour.shape
    raise NfcError(
        f"the causal coder codes colour and grey images of at most 16384 pixels (128x128) that are not thin "
        f"strips, not this {'grey' if c == 1 else 'colour'} {w}x{h} one (the auto coder takes any)"
    )


def _refuse_adaptive(colour: np.ndarray) -> Payload:
    h, w, _ = colour.shape
    raise NfcError(
        f"the adaptive coder codes images of at most {MAX_FRONTS} wavefronts (2 (height - 1) + width), "
        f"not this {w}x{h} strip (the auto and linear coders take any)"
    )


def encode_auto(
    colours: list[np.ndarray],
    flow: "FlowCoder | None",
    effort: int,
    size: Callable[[int, Payload], int],
    progress: Progress = None,
    tried: "list[JpegTry | None] | None" = None,
) -> list[Payload]:
    """Each image's smallest payload of the photo models AUTO tries (`flow`: the FlowCoder, or None
    where it is not tried or has no exact form); `size(i, payload)` is the bytes of image i's file;
    `tried`: what `jpeg_if_sure` made of each image already, where it did."""
    one = progress if len(colours) == 1 else None  # the linear model reports on a lone image
    flowed = flow.encode_many(colours, progress, effort) if flow is not None else [None] * len(colours)
    causal = [encode_causal(c) for c in colours]
    tried = tried or [None] * len(colours)
    options = [
        [f, r]
        if r is not None and _pixels(c) <= LINEAR_SMALL and effort < FLOW_FROM_EFFORT
        else [f, encode_linear_or_jpeg(c, one, adaptive_too=True, rival=r, tried=t), r]
        for c, f, r, t in zip(colours, flowed, causal, tried)
    ]
    return [_smallest(i, o, size) for i, o in enumerate(options)]


def _smallest(i: int, options: list[Payload | None], size: Callable[[int, Payload], int]) -> Payload:
    """The payload of the smallest file of those coded (None: not tried), the first on a tie."""
    return min((p for p in options if p is not None), key=lambda p: size(i, p))
