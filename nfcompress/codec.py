"""Image arrays <-> .nfc bytes: tiling, batching, the flow and the coder together."""

__all__ = ["Codec", "EncodeResult", "CODERS", "plan_tiles", "count_chunks", "encode_linear", "decode_linear"]

import copy
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nfcompress import causal, jpeg, linear
from nfcompress.coding import Decoder, Encoder, plan_buckets, pop_latents, push_latents
from nfcompress.container import MAX_PIXELS, MODES, SHIPPED_MODELS, Header, pack, unpack
from nfcompress.errors import ChecksumError, FormatError, ModelMismatch, NfcError
from nfcompress.flows import IDF, MixtureParams, log2_prob, split_params
from nfcompress.flows.exact import LEVELS, check_ranges, exact_copy
from nfcompress.orientation import DEFAULT_EFFORT, ORIENTATIONS, candidates, orient, unorient
from nfcompress.weights import DEFAULT_MODEL, load_model, model_of, portable_hash, shipped_sha256

DEFAULT_TILE = 64
DEFAULT_BATCH = 64
# Which model codes an image: the smallest file of the flow, the linear and the causal model
# (auto), or one of them.
CODERS = ("auto", "flow", "linear", "causal")
# At effort 1, an image of SAMPLE_FROM full tiles or more goes through the flow only if its ideal
# bits on SAMPLE_TILES of them, spread over the image, are under SAMPLE_MARGIN times the linear
# model's there: on large photos the flow rarely wins, and trying costs more than the linear model.
SAMPLE_FROM, SAMPLE_TILES, SAMPLE_MARGIN = 16, 8, 1.02
# At effort 1, colour images of at most LINEAR_FROM pixels (32x32 thumbnails) try the linear model
# only where the flow's file is under LINEAR_BELOW bits per sub-pixel: there it won 29 of 40 val
# thumbnails, above it 21 of 160. Trying it everywhere coded thumb32 1.1% smaller for 2.6x the
# encode time; so, 0.6% for 1.3x.
LINEAR_FROM, LINEAR_BELOW = 1024, 3.0
# The thread counts a float file that fails to decode is tried again with, up to the CPU's count
# (more threads than cores would each take far longer, and slow the process down after them).
FLOAT_THREADS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
# Where the JPEG-history model's ideal bits on the central crop are under JPEG_SURE times the linear
# model's there, the linear model is not tried on the whole image.
JPEG_SURE = 0.8


@dataclass
class EncodeResult:
    """A coded image and what it cost."""

    data: bytes
    ideal_bits: float
    subpixels: int
    portable: bool = False  # decodes on any machine (exact integer network)
    coder: str = "flow"  # what coded it: the flow or the per-image linear model

    @property
    def bpsp(self) -> float:
        """Bits per sub-pixel of the real file, header included."""
        return 8 * len(self.data) / self.subpixels

    @property
    def ideal_bpsp(self) -> float:
        """The model's own figure: -log2 P(image) per sub-pixel."""
        return self.ideal_bits / self.subpixels


@dataclass
class _Tile:
    y: int
    x: int
    h: int
    w: int


_NO_PORTABLE_FORM = (
    "model {name!r} has no portable form (its card holds no calibration), so the flow cannot write a file "
    "that decodes on every machine; calibrate it (scripts/calibrate_exact.py) or use --coder auto"
)


def _undecodable(what: str, portable: bool) -> str:
    """The message for a payload that fails to decode behind a valid header, naming its causes."""
    if portable:
        return f"{what}: the file is damaged (a portable file decodes alike on every machine)"
    return (
        f"{what}: the file is damaged, or it was coded on a machine whose floating-point arithmetic "
        "differs from this one's (another kind of CPU or GPU); decode it where it was coded"
    )


def plan_tiles(height: int, width: int, tile: int, batch: int, multiple: int) -> list[list[_Tile]]:
    """Split an image into tiles and group them into chunks of equal padded shape.

    The plan depends only on its arguments, so the decoder rebuilds it from the header and
    every chunk is decoded with exactly the batch shape it was encoded with.
    """
    groups: dict[tuple[int, int], list[_Tile]] = {}
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            t = _Tile(y, x, min(tile, height - y), min(tile, width - x))
            key = (-(-t.h // multiple) * multiple, -(-t.w // multiple) * multiple)
            groups.setdefault(key, []).append(t)
    chunks = []
    for key in sorted(groups, reverse=True):
        tiles = groups[key]
        chunks.extend(tiles[i : i + batch] for i in range(0, len(tiles), batch))
    return chunks


def count_chunks(height: int, width: int, tile: int, batch: int, multiple: int) -> int:
    """How many chunks `plan_tiles` makes, computed without building the plan."""

    def sizes(n: int) -> dict[int, int]:
        full, rem = divmod(n, tile)
        out = {tile: full} if full else {}
        if rem:
            padded = -(-rem // multiple) * multiple
            out[padded] = out.get(padded, 0) + 1
        return out

    rows, cols = sizes(height), sizes(width)
    return sum(-(-(r * c) // batch) for r in rows.values() for c in cols.values())


def _padded(rgb: np.ndarray, tiles: list[_Tile], multiple: int) -> np.ndarray:
    """The tiles of an (H, W, 3) image as a (B, 3, h, w) batch, edges replicated to a multiple."""
    ph, pw = _shape(tiles, multiple)
    out = np.empty((len(tiles), 3, ph, pw), np.uint8)
    for i, t in enumerate(tiles):
        crop = rgb[t.y : t.y + t.h, t.x : t.x + t.w]
        out[i] = np.pad(crop, ((0, ph - t.h), (0, pw - t.w), (0, 0)), mode="edge").transpose(2, 0, 1)
    return out


def _shape(tiles: list[_Tile], multiple: int) -> tuple[int, int]:
    """The padded (h, w) of a chunk's tiles."""
    return -(-tiles[0].h // multiple) * multiple, -(-tiles[0].w // multiple) * multiple


def _runs(jobs: list[tuple[int, object]], batch: int) -> list[list[int]]:
    """Chunks (tile count, key) grouped into network runs: of one key and at most `batch` tiles.

    A key of None runs alone: float networks give other bits for other batch shapes, so only
    portable chunks, whose network is exact, may share a run.
    """
    runs: list[list[int]] = []
    open_runs: dict[object, tuple[list[int], int]] = {}
    for i, (n, key) in enumerate(jobs):
        run, size = open_runs.get(key, ([], batch))
        if key is None or size + n > batch:
            run, size = [], 0
            runs.append(run)
        run.append(i)
        open_runs[key] = (run, size + n)
    return runs


def _spans(starts: list[int], per_tile: int) -> list[tuple[int, int]]:
    """The flat latent rows of each chunk in a run, from the chunks' first tiles (and the end)."""
    return [(a * per_tile, b * per_tile) for a, b in zip(starts, starts[1:])]


def _split_mode(pixels: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The colour part as (H, W, 3) for the flow, and the alpha plane if there is one."""
    if mode in ("L", "LA"):
        gray = pixels[..., 0]
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:
        rgb = pixels[..., :3]
    alpha = pixels[..., -1] if mode in ("LA", "RGBA") else None
    return np.ascontiguousarray(rgb), alpha


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


class Codec:
    """A model bound to a device: encodes uint8 arrays to .nfc bytes and decodes them back.

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
        model: IDF,
        name: str,
        weights_hash: str,
        device: str = "cpu",
        tile: int = DEFAULT_TILE,
        batch: int = DEFAULT_BATCH,
        effort: int = DEFAULT_EFFORT,
        exact: dict | None = None,
        portable: bool | None = None,
        coder: str = "auto",
    ) -> None:
        if tile & (tile - 1) or tile < model.config.multiple:
            raise NfcError(f"tile must be a power of two of at least {model.config.multiple}")
        # The calibration of the model's portable form (its card's "exact"), if it has one.
        self._ranges = (exact or {}).get("ranges")
        self._levels = int((exact or {}).get("levels", LEVELS))
        if self._ranges is not None:
            try:
                check_ranges(model, self._ranges)
            except ValueError as e:
                raise NfcError(f"model {name!r}: {e}") from None
        self._exact: IDF | None = None
        self.name = name
        self.device = device
        if torch.device(device).type not in ("cpu", "cuda"):
            raise NfcError(f"unsupported device {device!r} (cpu or cuda)")
        # The flow writes portable files only (they decode on any machine); a model without a
        # calibrated integer form decodes old files but writes none.
        self.portable = self._portable(portable) if portable is not None else bool(self._ranges)
        self.effort = self._effort(effort)
        self.coder = self._coder(coder or "auto")
        # Subnormals in the priors' float bits made coding up to 30x slower. Files do not change: the
        # exact network's sums are integers and its scales normal, and the tables use det_exp.
        torch.set_flush_denormal(True)
        # Channels-last convolutions are ~20% faster on the CPU; encode and decode both use them.
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)
        # Files before version 3 were coded with row-major convolutions, whose floats differ:
        # they decode with a row-major copy, made on first use.
        self._row_major: IDF | None = None
        # The model holds per-call state (the decode shape): one call at a time.
        self._lock = threading.Lock()
        self.hash = bytes.fromhex(weights_hash)[:4]
        self._misnamed = name in SHIPPED_MODELS and shipped_sha256(name) != weights_hash
        # Portable files name the weights and the calibration together: another calibration of
        # the same weights is another network.
        self.portable_hash = portable_hash(weights_hash, exact) if self._ranges else b""
        self.tile = tile
        self.batch = batch

    @classmethod
    def load(cls, model: str = "", device: str = "cpu", **kw) -> "Codec":
        """A codec for a named model (the shipped default when none is named)."""
        m, card = load_model(model or DEFAULT_MODEL)
        return cls(m, card.name, card.sha256, device=device, exact=card.exact, **kw)

    def _effort(self, effort: int | None) -> int:
        """A call's effort (the codec's own when None), checked where the efforts are defined."""
        effort = self.effort if effort is None else effort
        try:
            candidates(effort, square=True)
        except ValueError as e:
            raise NfcError(str(e)) from None
        return effort

    def _coder(self, coder: str | None) -> str:
        """A call's coder (the codec's own when None), checked."""
        coder = self.coder if coder is None else coder
        if coder not in CODERS:
            raise NfcError(f"unknown coder {coder!r} (one of {', '.join(CODERS)})")
        return coder

    def _portable(self, portable: bool | None) -> bool:
        """A call's choice of portable coding (the codec's own when None), checked: only portable
        files are written, so False is refused."""
        if portable is None:
            return self.portable
        if not portable:
            raise NfcError(
                "files bound to one machine's floating-point arithmetic are no longer written (they can fail "
                "to decode on another CPU, thread count or GPU); every file nfcompress writes is portable"
            )
        if not self._ranges:
            raise NfcError(_NO_PORTABLE_FORM.format(name=self.name))
        return True

    def _device_kind(self) -> str:
        return torch.device(self.device).type

    def _net(self, portable: bool) -> IDF:
        """The network a file's kind needs: the exact integer copy for portable files (made on first
        use, on the CPU whatever the codec's device: only the CPU's exact sums are proven alike)."""
        if not portable:
            return self.model
        if self._exact is None:
            cpu = self.model if self._device_kind() == "cpu" else copy.deepcopy(self.model).cpu()
            self._exact = exact_copy(cpu, self._ranges, self._levels)
        return self._exact

    def _run_device(self, portable: bool) -> str:
        """Where a file's network runs: portable files on the CPU, old device-bound ones on theirs."""
        return "cpu" if portable else self.device

    @torch.no_grad()
    def encode(
        self,
        image: np.ndarray,
        progress: Callable[[int, int], None] | None = None,
        effort: int | None = None,
        portable: bool | None = None,
        coder: str | None = None,
    ) -> EncodeResult:
        """Code an (H, W[, C]) uint8 array at an effort and portability (the codec's own by default);
        `progress(done, total)` is called after each network run (a chunk of tiles).

        `coder` (the codec's own by default, "auto") keeps the smallest of the flow's file, the
        per-image linear model's (nfcompress.linear, which wins on most large photos) and, for
        colour images up to causal.MAX_PIXELS, the causal model's (nfcompress.causal, which wins
        on most thumbnails); "flow", "linear" or "causal" code with one.
        """
        return self.encode_many([image], progress, effort, portable, coder)[0]

    @torch.no_grad()
    def encode_many(
        self,
        images: list[np.ndarray],
        progress: Callable[[int, int], None] | None = None,
        effort: int | None = None,
        portable: bool | None = None,
        coder: str | None = None,
    ) -> list[EncodeResult]:
        """`encode` of each image, the same bytes, faster for small ones: portable files share network runs.

        All the images and their files are held at once: pass small images, or a few large ones.
        """
        effort, portable, coder = self._effort(effort), self._portable(portable), self._coder(coder)
        one = progress if len(images) == 1 else None  # the linear model reports on a lone image
        if coder == "linear":
            return [_encode_linear(image, one)[0] for image in images]
        if coder == "causal":
            return [_encode_causal(image, strict=True) for image in images]
        if self._misnamed:
            # Its files would leave the name out and point decoders at the shipped model.
            raise NfcError(
                f"this model is named {self.name!r} but is not the shipped {self.name!r} (other weights): "
                "give it a name of its own (its card's name, or train --name)"
            )
        if coder == "flow":
            if not portable:  # only the exact integer form writes files
                raise NfcError(_NO_PORTABLE_FORM.format(name=self.name))
            with self._lock:
                return self._encode(images, progress, effort, portable)
        if not portable:  # a model with no exact form writes no file: the flow sits this one out
            return [_smallest([_encode_linear(im, one)[0], _encode_causal(im)]) for im in images]
        # The linear model codes every image but small colour ones at effort 1, where it rarely wins
        # unless the flow's file is small (below).
        lin = [_encode_linear(im, one) if effort > 1 or _linear_pays(im) else None for im in images]
        with self._lock:
            # The flow codes every image but those where a sample of its tiles says it will lose.
            tried = [
                i
                for i, (image, ln) in enumerate(zip(images, lin))
                if ln is None or self._worth_trying(image, ln[1], effort, portable)
            ]
            flow = dict(zip(tried, self._encode([images[i] for i in tried], progress, effort, portable)))
        lin = [
            _encode_linear(images[i], one) if ln is None and flow[i].bpsp < LINEAR_BELOW else ln
            for i, ln in enumerate(lin)
        ]
        return [_smallest([flow.get(i), ln[0] if ln else None, _encode_causal(images[i])]) for i, ln in enumerate(lin)]

    def _worth_trying(self, image: np.ndarray, linear_bits: np.ndarray, effort: int, portable: bool) -> bool:
        """Whether the flow may code an image smaller than the linear model, whose bits per pixel
        are `linear_bits`: at effort 1 a large image is judged by a sample of its tiles, else yes."""
        if effort > 1:
            return True
        rgb, _ = _split_mode(*_as_pixels(image))
        full = [t for c in plan_tiles(*rgb.shape[:2], self.tile, self.batch, 1) for t in c if t.h == t.w == self.tile]
        if len(full) < SAMPLE_FROM:
            return True
        sample = full[:: len(full) // SAMPLE_TILES][:SAMPLE_TILES]
        x = torch.from_numpy(_padded(rgb, sample, self.model.config.multiple)).to(self._run_device(portable)).float()
        flow_bits = float(self._choose(x, effort, portable)[3].sum())
        linear_sum = sum(float(linear_bits[t.y : t.y + t.h, t.x : t.x + t.w].sum()) for t in sample)
        return flow_bits < linear_sum * SAMPLE_MARGIN

    def _encode(
        self, images: list[np.ndarray], progress: Callable[[int, int], None] | None, effort: int, portable: bool
    ) -> list[EncodeResult]:
        m = self.model.config.multiple
        prepared, jobs = [], []
        for i, image in enumerate(images):
            pixels, mode = _as_pixels(image)
            rgb, alpha = _split_mode(pixels, mode)
            prepared.append((pixels, mode, alpha))
            jobs += [(i, rgb, tiles) for tiles in plan_tiles(*rgb.shape[:2], self.tile, self.batch, m)]
        runs = _runs([(len(t), _shape(t, m) if portable else None) for _, _, t in jobs], self.batch)
        coded: list[tuple[bytes, float]] = [(b"", 0.0)] * len(jobs)
        for r, run in enumerate(runs):
            x = np.concatenate([_padded(jobs[j][1], jobs[j][2], m) for j in run])
            for j, out in zip(run, self._encode_chunks(x, [len(jobs[j][2]) for j in run], effort, portable)):
                coded[j] = out
            if progress:
                progress(r + 1, len(runs))
        per_image: list[list[tuple[bytes, float]]] = [[] for _ in images]
        for (i, _, _), c in zip(jobs, coded):
            per_image[i].append(c)
        return [self._result(*p, c, effort, portable) for p, c in zip(prepared, per_image)]

    def _result(
        self,
        pixels: np.ndarray,
        mode: str,
        alpha: np.ndarray | None,
        coded: list[tuple[bytes, float]],
        effort: int,
        portable: bool,
    ) -> EncodeResult:
        """One image's file from its coded chunks."""
        ideal = sum(bits for _, bits in coded)
        alpha_data = b""
        if alpha is not None:
            alpha_data = zlib.compress(alpha.tobytes(), 9)
            ideal += 8 * len(alpha_data)
        header = Header(
            model_name=self.name,
            model_hash=self.portable_hash if portable else self.hash,
            width=pixels.shape[1],
            height=pixels.shape[0],
            mode=mode,
            tile=self.tile,
            batch=self.batch,
            pixel_crc=zlib.crc32(pixels.tobytes()),
            device="any" if portable else self._device_kind(),
            oriented=effort > 1,
        )
        return EncodeResult(pack(header, [data for data, _ in coded], alpha_data), ideal, pixels.size, portable)

    @torch.no_grad()
    def ideal_bits(
        self, image: np.ndarray, effort: int | None = None, portable: bool | None = None
    ) -> tuple[float, int]:
        """The model's -log2 P of an image as `encode` would code it, and its sub-pixel count."""
        effort, portable = self._effort(effort), self._portable(portable)
        pixels, mode = _as_pixels(image)
        rgb, alpha = _split_mode(pixels, mode)
        m = self.model.config.multiple
        bits = 0.0
        for tiles in plan_tiles(rgb.shape[0], rgb.shape[1], self.tile, self.batch, m):
            x = torch.from_numpy(_padded(rgb, tiles, m)).to(self._run_device(portable)).float()
            with self._lock:
                bits += float(self._choose(x, effort, portable)[3].sum())
        if alpha is not None:
            bits += 8 * len(zlib.compress(alpha.tobytes(), 9))
        return bits, pixels.size

    def _choose(
        self, x: torch.Tensor, effort: int, portable: bool
    ) -> tuple[list[int], list[torch.Tensor], list[MixtureParams], torch.Tensor]:
        """Each tile's cheapest orientation, with its latents, the prior mixtures to code them with
        (raw logits for portable files) and bits (orientation included)."""
        square = x.shape[2] == x.shape[3]
        best = None
        mixtures = self.model.config.mixtures
        for k in candidates(effort, square):
            latents, raw = self._net(portable).forward_with_params(orient(x, k))
            params = [split_params(r, mixtures, normalise=not portable) for r in raw]
            scored = [_normalised(p) for p in params] if portable else params
            bits = sum(-log2_prob(z, p).double().flatten(1).sum(1) for z, p in zip(latents, scored))
            if best is None:
                best = (torch.full_like(bits, k, dtype=torch.int64), latents, params, bits)
                continue
            win = bits < best[3]
            best = (
                torch.where(win, k, best[0]),
                [_per_tile(win, a, b) for a, b in zip(latents, best[1])],
                [_per_tile_mixture(win, a, b) for a, b in zip(params, best[2])],
                torch.minimum(bits, best[3]),
            )
        ks, latents, params, bits = best
        if effort > 1:
            bits = bits + float(np.log2(ORIENTATIONS))
        return ks.tolist(), latents, params, bits

    def _encode_chunks(
        self, batch: np.ndarray, counts: list[int], effort: int, portable: bool
    ) -> list[tuple[bytes, float]]:
        """Code a batch of tiles as chunks of `counts` tiles each: one network run, a stream per chunk."""
        x = torch.from_numpy(batch).to(self._run_device(portable)).float()
        ks, latents, params, bits = self._choose(x, effort, portable)
        starts = np.cumsum([0, *counts]).tolist()
        encoders = [Encoder() for _ in counts]
        # The decoder pops the last forward step first, so push in forward order.
        for z, p in zip(latents, params):
            values = z.round().to(torch.int64).cpu().numpy().ravel()
            push_latents(encoders, _spans(starts, len(values) // len(x)), values, _tables(p, portable=portable))
        out = []
        for enc, a, b in zip(encoders, starts, starts[1:]):
            if effort > 1:
                enc.push_symbols(np.array(ks[a:b]), ORIENTATIONS)
            out.append((enc.finish(), float(bits[a:b].sum())))
        return out

    def read_header(self, data: bytes) -> Header:
        """Parse a file and check it was made with this codec's model and kind of device."""
        header, _, _ = unpack(data)
        self._check(header)
        return header

    def _check(self, header: Header) -> None:
        portable = header.device == "any"
        try:
            named = model_of(header)  # an unnamed file's shipped model, by its hash
        except ModelMismatch:
            named = "a shipped model this nfcompress lacks"
        if portable and named == self.name:
            if not self._ranges:
                raise ModelMismatch(f"this portable file needs the calibration of {self.name!r}, which its card lacks")
        ours = self.portable_hash if portable else self.hash
        if header.model_hash != ours[: len(header.model_hash)] or named != self.name:
            what = "weights and calibration" if portable else "weights"
            raise ModelMismatch(
                f"this file needs model {named!r} ({what} {header.model_hash.hex()}), "
                f"but {self.name!r} ({ours.hex()}) is loaded"
            )
        if not portable and header.device != self._device_kind():
            raise ModelMismatch(f"this file was encoded on {header.device} and must be decoded on {header.device}")

    @torch.no_grad()
    def decode(self, data: bytes, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Rebuild the exact uint8 array (H, W[, C]) from .nfc bytes, or raise NfcError."""
        out = self.decode_many([data], progress)[0]
        if isinstance(out, NfcError):
            raise out
        return out

    @torch.no_grad()
    def decode_many(
        self, datas: list[bytes], progress: Callable[[int, int], None] | None = None
    ) -> list[np.ndarray | NfcError]:
        """`decode` of each file, faster for small ones (portable files share network runs).

        A file that fails gives its NfcError in its place; the others still decode. All the
        decoded images are held at once: pass small files, or a few large ones.
        """
        with self._lock:
            results = self._decode(datas, progress)
            return [self._float_retry(d, r) if isinstance(r, ChecksumError) else r for d, r in zip(datas, results)]

    def _float_retry(self, data: bytes, error: ChecksumError) -> np.ndarray | NfcError:
        """A float file (written up to 0.9) that failed, decoded again with other thread counts:
        the float kernels split their sums by the thread count, so such a file decodes only with
        the split it was encoded with. Portable files are not retried (they fail only when damaged)."""
        try:
            if unpack(data)[0].device == "any":
                return error
        except NfcError:
            return error
        old = torch.get_num_threads()
        try:
            for n in FLOAT_THREADS:
                if n != old and n <= (os.cpu_count() or 1):
                    torch.set_num_threads(n)
                    out = self._decode([data], None)[0]
                    if not isinstance(out, ChecksumError):
                        return out
        finally:
            torch.set_num_threads(old)
        return error

    def _decode(self, datas: list[bytes], progress: Callable[[int, int], None] | None) -> list[np.ndarray | NfcError]:
        m = self.model.config.multiple
        results: list[np.ndarray | NfcError | None] = [None] * len(datas)
        files, jobs = {}, []
        for i, data in enumerate(datas):
            try:
                header, chunks, alpha_data = unpack(data)
                if header.coder == "linear":
                    results[i] = decode_linear(header, chunks[0], alpha_data, progress if len(datas) == 1 else None)
                    continue
                self._check(header)
                if header.batch < 1 or header.tile < m:
                    raise FormatError(f"corrupted .nfc file: tiles of {header.tile} in runs of {header.batch}")
                expected = count_chunks(header.height, header.width, header.tile, header.batch, m)
                if expected != len(chunks):
                    raise FormatError(f"corrupted .nfc file: {len(chunks)} chunks where the tiling needs {expected}")
            except NfcError as e:
                results[i] = e
                continue
            files[i] = (header, alpha_data, np.empty((header.height, header.width, 3), np.uint8))
            plan = plan_tiles(header.height, header.width, header.tile, header.batch, m)
            jobs += [(i, tiles, chunk) for tiles, chunk in zip(plan, chunks)]
        runs = _runs([(len(t), _shape(t, m) if files[i][0].device == "any" else None) for i, t, _ in jobs], self.batch)
        for r, run in enumerate(runs):
            self._decode_run([j for j in run if results[jobs[j][0]] is None], jobs, files, datas, results)
            if progress:
                progress(r + 1, len(runs))
        for i, (header, alpha_data, rgb) in files.items():
            if results[i] is None:
                try:
                    results[i] = self._pixels(rgb, header, alpha_data)
                except NfcError as e:
                    results[i] = e
        return results

    def _decode_run(self, run: list[int], jobs: list, files: dict, datas: list[bytes], results: list) -> None:
        """Decode one network run of chunks into their files' pixels; a failure goes to `results`."""
        if not run:
            return
        m = self.model.config.multiple
        owners = sorted({jobs[j][0] for j in run})
        header = files[owners[0]][0]
        legacy, portable = header.version < 3, header.device == "any"
        if legacy and self._row_major is None:
            self._row_major = copy.deepcopy(self.model).to(memory_format=torch.contiguous_format)
        counts = [len(jobs[j][1]) for j in run]
        try:
            out = self._decode_chunks(
                self._row_major if legacy else self._net(portable),
                [jobs[j][2] for j in run],
                counts,
                *_shape(jobs[run[0]][1], m),
                [files[jobs[j][0]][0].oriented for j in run],
                legacy,
                portable,
            )
        except NfcError as e:
            # A run of several files failed: decode each alone, so that each gets its own verdict.
            for i in owners:
                results[i] = e if len(owners) == 1 else self._decode([datas[i]], None)[0]
            return
        for j, tiles in zip(run, np.split(out, np.cumsum(counts)[:-1])):
            rgb = files[jobs[j][0]][2]
            for t, tile in zip(jobs[j][1], tiles):
                rgb[t.y : t.y + t.h, t.x : t.x + t.w] = tile[:, : t.h, : t.w].transpose(1, 2, 0)

    def _pixels(self, rgb: np.ndarray, header: Header, alpha_data: bytes) -> np.ndarray:
        """A decoded file's pixels in its mode, checked against its checksum."""
        pixels = self._join_mode(rgb, header, alpha_data)
        if zlib.crc32(pixels.tobytes()) != header.pixel_crc:
            raise ChecksumError(_undecodable("decoded pixels do not match the file's checksum", header.device == "any"))
        return pixels if pixels.shape[2] > 1 else pixels[..., 0]

    def _decode_chunks(
        self,
        model: IDF,
        chunks: list[bytes],
        counts: list[int],
        h: int,
        w: int,
        oriented: list[bool],
        legacy: bool,
        portable: bool,
    ) -> np.ndarray:
        """Decode chunks of `counts` tiles each, of one padded shape, in one network run: (tiles, 3, h, w)."""
        decs = [Decoder(chunk) for chunk in chunks]
        try:
            ks = np.concatenate(
                [
                    d.pop_symbols(n, ORIENTATIONS) if o else np.zeros(n, np.int64)
                    for d, n, o in zip(decs, counts, oriented)
                ]
            )
        except (ValueError, RuntimeError, OverflowError) as e:
            raise FormatError(f"corrupted .nfc payload ({e})") from None
        if h != w and (ks & 4).any():
            raise FormatError("corrupted .nfc payload (a tile that is not square is transposed)")
        model.set_shape(len(ks), h, w)
        starts = np.cumsum([0, *counts]).tolist()

        def draw(step: int, raw: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
            p = split_params(raw, model.config.mixtures, normalise=not portable)
            values = pop_latents(decs, _spans(starts, int(np.prod(shape[1:]))), _tables(p, legacy, portable))
            return torch.from_numpy(values.reshape(shape)).to(raw.device).float()

        try:
            x = model.decode(draw)
        except (ValueError, RuntimeError, OverflowError) as e:
            raise ChecksumError(_undecodable(f"the payload does not decode: {e}", portable)) from None
        if not all(d.exhausted() for d in decs):
            raise ChecksumError(_undecodable("data left over after decoding", portable))
        x = torch.stack([unorient(t, int(k)) for t, k in zip(x.round(), ks)])
        if x.min() < 0 or x.max() > 255:
            raise ChecksumError(_undecodable("decoded pixels out of range", portable))
        return x.to(torch.uint8).cpu().numpy()

    def _join_mode(self, rgb: np.ndarray, header: Header, alpha_data: bytes) -> np.ndarray:
        if header.mode in ("L", "LA") and not (rgb[..., 0:1] == rgb[..., 1:]).all():
            raise ChecksumError(_undecodable("decoded grey image is not grey", header.device == "any"))
        return _with_alpha(rgb[..., :1] if header.mode in ("L", "LA") else rgb, header, alpha_data)


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


def _smallest(options: list[EncodeResult | None]) -> EncodeResult:
    """The smallest file of those coded (None: not tried), the first on a tie (the flow's)."""
    return min((r for r in options if r is not None), key=lambda r: len(r.data))


def _linear_pays(image: np.ndarray) -> bool:
    """Whether the linear model is worth trying at effort 1: on grey images (one plane where the
    flow codes three) and on images larger than LINEAR_FROM pixels."""
    a = np.asarray(image)
    return a.ndim == 2 or a.shape[2] <= 2 or a.shape[0] * a.shape[1] > LINEAR_FROM


def encode_linear(image: np.ndarray) -> EncodeResult:
    """An image coded by the per-image linear model: a file that needs no model (nfcompress.linear)."""
    return _encode_linear(image)[0]


def _encode_linear(
    image: np.ndarray, progress: Callable[[int, int], None] | None = None, jpeg_too: bool = True
) -> tuple[EncodeResult, np.ndarray]:
    """`encode_linear`, and the ideal bits of each pixel (H, W; alpha aside).

    Where the image shows a JPEG's quantizer steps on an 8x8 grid (from its top left, or where
    the grid a JPEG left lies), the JPEG-history model (nfcompress.jpeg) is tried too (unless
    not `jpeg_too`), and the smaller payload kept; the header says which.
    """
    pixels, mode = _as_pixels(image)
    colour = pixels[..., :1] if mode in ("L", "LA") else pixels[..., :3]
    try:
        chosen = jpeg.choose(colour, progress) if jpeg_too else None
        jdata, jbits = jpeg.encode(colour, chosen[0]) if chosen else (None, 0.0)
    except ValueError:  # a value too wide for the model: no JPEG made these pixels
        chosen, jdata = None, None
    if jdata is not None and chosen[2] < JPEG_SURE * _linear_bits(chosen[1]):
        # Far smaller on the central crop: the linear model is not tried on the whole image.
        data, ideal, from_jpeg = jdata, jbits, True
        pixel_bits = np.full(colour.shape[:2], jbits / colour[..., 0].size)
        if progress:
            progress(4, 4)
    else:
        data, pixel_bits, side = linear.encode(colour, progress=progress)
        ideal, from_jpeg = float(pixel_bits.sum()) + side, False
        if jdata is not None and len(jdata) < len(data):
            data, ideal, from_jpeg = jdata, jbits, True
            pixel_bits = np.full(pixel_bits.shape, jbits / pixel_bits.size)
    return _model_free_file(pixels, mode, data, ideal, "jpeg" if from_jpeg else "linear"), pixel_bits


def _model_free_file(pixels: np.ndarray, mode: str, payload: bytes, ideal: float, coder: str) -> EncodeResult:
    """The file of a payload of the linear, JPEG-history or causal model (`coder`), the alpha
    plane (if the mode has one) beside it."""
    alpha_data = b""
    if mode in ("LA", "RGBA"):
        alpha_data = zlib.compress(pixels[..., -1].tobytes(), 9)
        ideal += 8 * len(alpha_data)
    header = Header(
        model_name="",
        model_hash=b"",
        width=pixels.shape[1],
        height=pixels.shape[0],
        mode=mode,
        tile=0,
        batch=0,
        pixel_crc=zlib.crc32(pixels.tobytes()),
        device="any",
        coder="linear",
        jpeg=coder == "jpeg",
        causal=coder == "causal",
    )
    return EncodeResult(pack(header, [payload], alpha_data), ideal, pixels.size, portable=True, coder=coder)


def _encode_causal(image: np.ndarray, strict: bool = False) -> EncodeResult | None:
    """An image coded by the causal model (nfcompress.causal), or None where it does not apply
    (grey images, images over causal.MAX_PIXELS, thin strips); with `strict` an error says why instead."""
    pixels, mode = _as_pixels(image)
    if mode in ("L", "LA") or not causal.fits(*pixels.shape[:2]):
        if strict:
            raise NfcError(
                f"the causal coder codes colour images of at most {causal.MAX_PIXELS} pixels (128x128) that "
                f"are not thin strips, not this {mode} {pixels.shape[1]}x{pixels.shape[0]} one "
                "(the auto coder takes any)"
            )
        return None
    return _model_free_file(pixels, mode, *causal.encode(pixels[..., :3]), "causal")


def _linear_bits(colour: np.ndarray) -> float:
    """The linear model's ideal bits for an image, its side information included."""
    _, pixel_bits, side = linear.encode(colour)
    return float(pixel_bits.sum()) + side


def decode_linear(
    header: Header, chunk: bytes, alpha_data: bytes, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """The pixels of a linear file (its parsed header and payload), checked against its checksum;
    `progress(done, total)` as `linear.decode` calls it."""
    channels = 1 if header.mode in ("L", "LA") else 3
    try:
        if header.jpeg:
            colour = jpeg.decode(chunk, header.height, header.width, channels, progress)
        elif header.causal:
            colour = causal.decode(chunk, header.height, header.width)
        else:
            scheme = {6: 1, 7: 2}.get(header.version, linear.SCHEME)
            colour = linear.decode(chunk, header.height, header.width, channels, progress, scheme)
    except (ValueError, RuntimeError, OverflowError, IndexError) as e:
        raise ChecksumError(_undecodable(f"the payload does not decode: {e}", True)) from None
    pixels = _with_alpha(colour, header, alpha_data)
    if zlib.crc32(pixels.tobytes()) != header.pixel_crc:
        raise ChecksumError(_undecodable("decoded pixels do not match the file's checksum", True))
    return pixels if pixels.shape[2] > 1 else pixels[..., 0]


def _per_tile(win: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """`new` for the tiles (first dimension) where `win` holds, `old` for the rest."""
    return torch.where(win.view(-1, *[1] * (new.dim() - 1)), new, old)


def _per_tile_mixture(win: torch.Tensor, new: MixtureParams, old: MixtureParams) -> MixtureParams:
    """`_per_tile` for each of a mixture's parameters."""
    return MixtureParams(
        _per_tile(win, new.log_weights, old.log_weights),
        _per_tile(win, new.means, old.means),
        _per_tile(win, new.log_scales, old.log_scales),
    )


def _normalised(p: MixtureParams) -> MixtureParams:
    """Mixture parameters with raw logits (portable coding's) turned into log weights."""
    return MixtureParams(torch.log_softmax(p.log_weights, dim=1), p.means, p.log_scales)


def _tables(p, legacy: bool = False, portable: bool = False) -> list:
    """Coding tables for every latent of a group (`legacy`: as files before version 3 were coded;
    `portable`: from raw logits, the same integers on every machine)."""

    def flat(t: torch.Tensor) -> np.ndarray:
        return t.movedim(1, -1).reshape(-1, t.shape[1]).cpu().numpy()

    return plan_buckets(flat(p.log_weights), flat(p.means), flat(p.log_scales), legacy, portable)
