"""Image arrays <-> .nfc bytes: modes and alpha, the checksum, and the model each file names.

The codec is a facade. Which model codes an image is nfcompress.policy's choice; each model
(nfcompress.coders) owns its payload; nfcompress.container owns the bytes around it. The flow,
and torch with it, is loaded only when a file needs it.
"""

__all__ = ["Codec", "EncodeResult", "colour_planes", "encode_linear", "decode_model_free", "decode_model_free_many"]

import functools
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nfcompress import policy
from nfcompress.coders.base import Payload, Progress, undecodable
from nfcompress.container import LEAN, MAX_PIXELS, MODES, Header, pack, unpack
from nfcompress.errors import ChecksumError, FormatError, NfcError
from nfcompress.model_files import DEFAULT_MODEL, find_card

if TYPE_CHECKING:  # the flow, and torch with it, loads only when a file needs it
    from nfcompress.coders.flow import FlowCoder


@dataclass
class EncodeResult:
    """A coded image and what it cost."""

    data: bytes
    ideal_bits: float
    subpixels: int
    portable: bool = True  # decodes on any machine (every file written now does)
    coder: str = "flow"  # the payload kind: which model coded it
    # Its payload's `Payload.replay`, for `Codec.verify_many` (None: decode it); only `encode_many` with `keep`.
    replay: Callable[[Header, list[bytes]], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def bpsp(self) -> float:
        """Bits per sub-pixel of the real file, header included."""
        return 8 * len(self.data) / self.subpixels

    @property
    def ideal_bpsp(self) -> float:
        """The model's own figure: -log2 P(image) per sub-pixel."""
        return self.ideal_bits / self.subpixels


def _as_pixels(image: np.ndarray) -> tuple[np.ndarray, str]:
    """Check an array and name its mode: (H, W) is L, (H, W, 2|3|4) is LA, RGB or RGBA."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise NfcError(f"images must be 8-bit (uint8), got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise NfcError(f"cannot code an array of shape {np.asarray(image).shape}")
    if a.shape[0] * a.shape[1] == 0:
        raise NfcError("cannot code an empty image")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise NfcError(f"image of {a.shape[1]}x{a.shape[0]} is larger than the limit of {MAX_PIXELS} pixels")
    return np.ascontiguousarray(a), MODES[a.shape[2] - 1]


@dataclass
class _Image:
    """An image to code: its pixels, its mode, its colour planes and its compressed alpha plane."""

    pixels: np.ndarray
    mode: str
    colour: np.ndarray
    alpha: bytes

    @classmethod
    def of(cls, image: np.ndarray) -> "_Image":
        pixels, mode = _as_pixels(image)
        colour = np.ascontiguousarray(pixels[..., :1] if mode in ("L", "LA") else pixels[..., :3])
        alpha = zlib.compress(pixels[..., -1].tobytes(), 9) if mode in ("LA", "RGBA") else b""
        return cls(pixels, mode, colour, alpha)

    def header(self, payload: Payload) -> Header:
        """The header of this image's file with a payload."""
        fields = {"model_name": "", "model_hash": b"", "tile": 0, "batch": 0, "device": "any", **payload.fields}
        h, w = self.pixels.shape[:2]
        return Header(width=w, height=h, mode=self.mode, pixel_crc=self.crc, kind=payload.kind, **fields)

    @functools.cached_property
    def crc(self) -> int:
        """The CRC-32 of the pixels, computed once however many payloads are weighed."""
        return zlib.crc32(self.pixels.tobytes())

    def file(self, payload: Payload) -> EncodeResult:
        """This image's file with a payload, and what it cost (alpha included)."""
        data = pack(self.header(payload), payload.chunks, self.alpha)
        bits = payload.ideal_bits + 8 * len(self.alpha)
        return EncodeResult(data, bits, self.pixels.size, True, payload.kind, payload.replay)

    def size(self, payload: Payload) -> int:
        """The bytes of this image's file with a payload."""
        return len(pack(self.header(payload), payload.chunks, self.alpha))


def colour_planes(image: np.ndarray) -> np.ndarray:
    """An image's colour planes as the models code them: (H, W, 1) grey or (H, W, 3) RGB, alpha aside."""
    return _Image.of(image).colour


def _with_alpha(colour: np.ndarray, header: Header, alpha_data: bytes) -> np.ndarray:
    """The colour planes (H, W, 1 or 3) with the file's alpha plane after them, if its mode has one."""
    planes = [colour]
    if header.mode in ("LA", "RGBA"):
        try:
            d = zlib.decompressobj()
            raw = d.decompress(alpha_data, header.width * header.height)
            if len(raw) != header.width * header.height or d.unconsumed_tail or not d.eof:
                raise zlib.error("wrong length")
        except zlib.error:
            raise FormatError("corrupted .nfc file (alpha plane)") from None
        planes.append(np.frombuffer(raw, np.uint8).reshape(header.height, header.width, 1))
    elif alpha_data:
        raise FormatError("corrupted .nfc file (alpha data for a mode without alpha)")
    return np.ascontiguousarray(np.concatenate(planes, axis=2))


def _checked(colour: np.ndarray, header: Header, alpha_data: bytes) -> np.ndarray:
    """A decoded file's pixels in its mode, checked against its checksum."""
    pixels = _with_alpha(colour, header, alpha_data)
    if zlib.crc32(pixels.tobytes()) != header.pixel_crc:
        raise ChecksumError(undecodable("decoded pixels do not match the file's checksum", header.device == "any"))
    return pixels if pixels.shape[2] > 1 else pixels[..., 0]


def decode_model_free(header: Header, chunks: list[bytes], alpha_data: bytes, progress: Progress = None) -> np.ndarray:
    """The pixels of a file of a model-free payload (its parsed header and chunks), checked
    against its checksum; no weights of the user's choosing, no torch."""
    decode = functools.partial(policy.MODEL_FREE[header.kind].decode, header, chunks, progress)
    try:
        return _checked_by(decode, header, alpha_data)
    except FormatError as e:
        raise _cut_or_damaged(e, header) from None


def _cut_or_damaged(e: NfcError, header: Header) -> NfcError:
    """A payload's error, which in a file that gives no payload size (from LEAN) may come of a
    file cut short: said so."""
    said = str(e)
    if header.version >= LEAN and said.startswith("corrupted payload"):
        return type(e)("truncated or " + said)
    return e


def _checked_by(colour_of: Callable[[], np.ndarray], header: Header, alpha_data: bytes) -> np.ndarray:
    """`_checked` of the colour planes `colour_of()` decodes from a model-free payload, its
    failures on a damaged payload (ValueError, RuntimeError, OverflowError, IndexError) as a
    ChecksumError."""
    try:
        colour = colour_of()
    except (ValueError, RuntimeError, OverflowError, IndexError) as e:
        raise ChecksumError(undecodable(f"the payload does not decode: {e}", True)) from None
    return _checked(colour, header, alpha_data)


def decode_model_free_many(
    files: list[tuple[Header, list[bytes], bytes]], progress: Progress = None
) -> list[np.ndarray | NfcError]:
    """`decode_model_free` of each file (parsed), or the NfcError that says why not; those of a
    model that decodes many at once (`decode_many`) together."""
    out: list[np.ndarray | NfcError | None] = [None] * len(files)
    kinds: dict[str, list[int]] = {}
    for n, (header, _, _) in enumerate(files):
        kinds.setdefault(header.kind, []).append(n)
    for kind, ns in kinds.items():
        many = getattr(policy.MODEL_FREE[kind], "decode_many", None)
        try:
            together = many([files[n][:2] for n in ns]) if many and len(ns) > 1 else None
        except (ValueError, RuntimeError, OverflowError, IndexError, NfcError):
            together = None  # each alone then says what failed
        for k, n in enumerate(ns):
            try:
                if together is None:
                    out[n] = decode_model_free(*files[n], progress if len(files) == 1 else None)
                else:
                    header, _, alpha = files[n]
                    colour = together[k]
                    out[n] = (
                        _cut_or_damaged(colour, header)
                        if isinstance(colour, NfcError)
                        else _checked(colour, header, alpha)
                    )
            except NfcError as e:  # decode_model_free's, said as it says them, or the checksum's
                out[n] = e
    return out


def encode_linear(image: np.ndarray) -> EncodeResult:
    """An image coded by the per-image linear model (or the JPEG-history one where it shows a
    JPEG and codes smaller): a file that needs no model."""
    im = _Image.of(image)
    return im.file(policy.encode_linear_or_jpeg(im.colour))


class Codec:
    """Encodes uint8 arrays to .nfc bytes and decodes them back, with a flow model on a device.

    Example:
        >>> import numpy as np
        >>> codec = Codec.load()
        >>> image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
        >>> data = codec.encode(image).data
        >>> bool((codec.decode(data) == image).all())
        True
    """

    def __init__(
        self,
        flow: "FlowCoder | None" = None,
        *,
        loader: "Callable[[], FlowCoder] | None" = None,
        name: str = "",
        effort: int = policy.DEFAULT_EFFORT,
        coder: str = "auto",
        portable: bool | None = None,
    ) -> None:
        """A codec with a `flow` coder, or a `loader` that makes one when a file first needs it
        (`name`: its model's)."""
        if (flow is None) == (loader is None):
            raise ValueError("a codec takes a flow coder or a loader of one")
        self._flow, self._load_flow = flow, loader
        self.name = name or flow.name
        self._lock = threading.Lock()
        self.effort = policy.check_effort(effort)
        self.coder = policy.check_coder(coder or "auto")
        self._portable(portable)

    @classmethod
    def load(
        cls, model: str = "", device: str = "cpu", tile: int | None = None, batch: int | None = None, **kw
    ) -> "Codec":
        """A codec for a named model (the shipped default when none is named); its card is read
        now, its weights when a file first needs the flow."""
        model = model or DEFAULT_MODEL
        _, card = find_card(model)
        if not (device == "cpu" or device.startswith("cuda")):
            raise NfcError(f"unsupported device {device!r} (cpu or cuda)")
        sizes = {k: v for k, v in (("tile", tile), ("batch", batch)) if v is not None}

        def flow():
            from nfcompress.coders.flow import FlowCoder

            return FlowCoder.load(model, device, **sizes)

        return cls(loader=flow, name=card.name, **kw)

    @property
    def flow(self) -> "FlowCoder":
        """The flow coder, loaded on first use."""
        if self._flow is None:
            with self._lock:
                if self._flow is None:
                    self._flow = self._load_flow()
        return self._flow

    def _portable(self, portable: bool | None) -> None:
        """Only portable files are written: False is refused, and True where the flow has no exact form."""
        if portable is not None and not portable:
            raise NfcError(
                "files bound to one machine's floating-point arithmetic are no longer written (they can fail "
                "to decode on another CPU, thread count or GPU); every file nfcompress writes is portable"
            )
        if portable:
            self.flow.check_writable()

    def encode(
        self,
        image: np.ndarray,
        progress: Progress = None,
        effort: int | None = None,
        portable: bool | None = None,
        coder: str | None = None,
    ) -> EncodeResult:
        """Code an (H, W[, C]) uint8 array at an effort (the codec's own by default);
        `progress(done, total)` is called as the work goes on.

        `coder` (the codec's own by default, "auto") keeps the smallest file of the models
        nfcompress.policy tries; "flow", "linear" (with JPEG-history recovery), "adaptive", "causal" or
        "screen" code with one. `portable` may only be True: every file written decodes on any machine.
        """
        return self.encode_many([image], progress, effort, portable, coder)[0]

    def encode_many(
        self,
        images: list[np.ndarray],
        progress: Progress = None,
        effort: int | None = None,
        portable: bool | None = None,
        coder: str | None = None,
        keep: bool = False,
    ) -> list[EncodeResult]:
        """`encode` of each image, the same bytes, faster for small ones: the flow codes them in
        shared network runs. All the images and their files are held at once; with `keep`, also
        what makes `verify_many` of them faster (`EncodeResult.replay`)."""
        effort = policy.check_effort(self.effort if effort is None else effort)
        coder = policy.check_coder(self.coder if coder is None else coder)
        self._portable(portable)
        ims = [_Image.of(image) for image in images]
        payloads = policy.encode(
            [im.colour for im in ims],
            [im.pixels.size for im in ims],
            coder,
            effort,
            lambda: self.flow,
            lambda i, p: ims[i].size(p),
            progress,
        )
        results = [im.file(p) for im, p in zip(ims, payloads)]
        if not keep:
            for r in results:
                r.replay = None
        return results

    def ideal_bits(
        self, image: np.ndarray, effort: int | None = None, portable: bool | None = None
    ) -> tuple[float, int]:
        """The flow's -log2 P of an image as `encode` with the flow would code it (alpha as coded),
        and its sub-pixel count."""
        effort = policy.check_effort(self.effort if effort is None else effort)
        self._portable(portable)
        im = _Image.of(image)
        return self.flow.ideal_bits(im.colour, effort) + 8 * len(im.alpha), im.pixels.size

    def read_header(self, data: bytes) -> Header:
        """Parse a file and check that this codec can decode it (its model, for a flow file)."""
        header, _, _ = unpack(data)
        if not header.model_free:
            self.flow.check(header)
        return header

    def decode(self, data: bytes, progress: Progress = None) -> np.ndarray:
        """Rebuild the exact uint8 array (H, W[, C]) from .nfc bytes, or raise NfcError."""
        out = self.decode_many([data], progress)[0]
        if isinstance(out, NfcError):
            raise out
        return out

    def decode_many(self, datas: list[bytes], progress: Progress = None) -> list[np.ndarray | NfcError]:
        """`decode` of each file, faster for small ones (flow files share network runs).

        A file that fails gives its NfcError in its place; the others still decode. All the
        decoded images are held at once: pass small files, or a few large ones.
        """
        results = self._decode(datas, progress)
        return [self._float_retry(d, r) if isinstance(r, ChecksumError) else r for d, r in zip(datas, results)]

    def verify_many(self, results: list[EncodeResult]) -> list[np.ndarray | NfcError]:
        """`decode_many` of the files of `results`, for the encoder's check: the same pixels or
        errors, faster where a model kept what its encoder computed (`Payload.replay`)."""
        out: list[np.ndarray | NfcError | None] = [None] * len(results)
        for i, r in enumerate(results):
            if r.replay is not None:
                try:
                    header, chunks, alpha = unpack(r.data)
                    out[i] = _checked_by(functools.partial(r.replay, header, chunks), header, alpha)
                except NfcError as e:
                    out[i] = e
        rest = [i for i, r in enumerate(results) if r.replay is None]
        for i, decoded in zip(rest, self.decode_many([results[i].data for i in rest])):
            out[i] = decoded
        return out

    def _decode(self, datas: list[bytes], progress: Progress) -> list[np.ndarray | NfcError]:
        results: list[np.ndarray | NfcError | None] = [None] * len(datas)
        flows, free = {}, {}
        for i, data in enumerate(datas):
            try:
                header, chunks, alpha = unpack(data)
                (free if header.model_free else flows)[i] = (header, chunks, alpha)
            except NfcError as e:
                results[i] = e
        for i, out in zip(free, decode_model_free_many(list(free.values()), progress if len(datas) == 1 else None)):
            results[i] = out
        if flows:
            decoded = self.flow.decode_many([(h, c) for h, c, _ in flows.values()], progress)
            for (i, (header, _, alpha)), colour in zip(flows.items(), decoded):
                try:
                    results[i] = colour if isinstance(colour, NfcError) else _checked(colour, header, alpha)
                except NfcError as e:
                    results[i] = e
        return results

    def _float_retry(self, data: bytes, error: ChecksumError) -> np.ndarray | NfcError:
        """A float file (written up to 0.9) that failed, decoded again with other thread counts:
        the float kernels split their sums by the thread count, so such a file decodes only with
        the split it was encoded with. Portable files are not retried (they fail only when damaged)."""
        try:
            if unpack(data)[0].device == "any":
                return error
        except NfcError:
            return error
        for _ in self.flow.float_threads():
            out = self._decode([data], None)[0]
            if not isinstance(out, ChecksumError):
                return out
        return error
