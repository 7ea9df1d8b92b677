"""The flow as a `Coder`: tiles through the integer flow, the orientation search, latents to ANS.

A flow payload is a chunk per run of tiles of one padded shape (nfcompress.coders.flow.tiles),
each chunk an ANS stream of its tiles' latents under the flow's priors (and, from effort 2,
each tile's orientation). Files are written by the exact integer network only, on the CPU, so
they decode alike on every machine; float files of older versions still decode here.
"""

__all__ = ["FlowCoder", "DEFAULT_TILE", "DEFAULT_BATCH", "FLOAT_THREADS", "as_rgb"]

import copy
import os
import threading
from collections.abc import Iterator

import numpy as np
import torch

from nfcompress.coders.base import Payload, Progress, undecodable
from nfcompress.coders.flow.orientation import ORIENTATIONS, candidates, orient, unorient
from nfcompress.coders.flow.tiles import count_chunks, padded, plan_tiles, runs, spans, tile_shape
from nfcompress.coding import Decoder, Encoder, plan_buckets, pop_latents, push_latents
from nfcompress.container import SHIPPED_MODELS, Header
from nfcompress.errors import ChecksumError, FormatError, ModelMismatch, NfcError
from nfcompress.flows import IDF, MixtureParams, log2_prob, split_params
from nfcompress.flows.exact import LEVELS, check_ranges, exact_copy
from nfcompress.threads import apply as apply_threads
from nfcompress.weights import load_model, model_of, portable_hash, shipped_sha256

apply_threads()  # the count a process asked for before torch was loaded

DEFAULT_TILE = 64
DEFAULT_BATCH = 64
# The thread counts a float file that fails to decode is tried again with, up to the CPU's count
# (more threads than cores would each take far longer, and slow the process down after them).
FLOAT_THREADS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)

_NO_PORTABLE_FORM = (
    "model {name!r} has no portable form (its card holds no calibration), so the flow cannot write a file "
    "that decodes on every machine; calibrate it (scripts/calibrate_exact.py) or use --coder auto"
)


class FlowCoder:
    """A flow model bound to a device: colour planes to flow payloads and back.

    The exact integer copy of the network codes every file written now, on the CPU whatever
    the device; the float network (on the device) decodes the files older versions wrote.
    """

    kind = "flow"

    def __init__(
        self,
        model: IDF,
        name: str,
        weights_hash: str,
        device: str = "cpu",
        tile: int = DEFAULT_TILE,
        batch: int = DEFAULT_BATCH,
        exact: dict | None = None,
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
        # Only a model with a calibrated integer form writes files (they decode on any machine);
        # one without decodes old files but writes none.
        self.portable = bool(self._ranges)
        # Subnormals in the priors' float bits made coding up to 30x slower. Files do not change: the
        # exact network's sums are integers and its scales normal, and the tables use det_exp.
        torch.set_flush_denormal(True)
        # Channels-last convolutions are ~20% faster on the CPU; encode and decode both use them.
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)
        # Files before version 3 were coded with row-major convolutions, whose floats differ:
        # they decode with a row-major copy, made on first use.
        self._row_major: IDF | None = None
        # The model holds per-call state (the decode shape): one call at a time.
        self.lock = threading.RLock()
        self.hash = bytes.fromhex(weights_hash)[:4]
        self._misnamed = name in SHIPPED_MODELS and shipped_sha256(name) != weights_hash
        # Portable files name the weights and the calibration together: another calibration of
        # the same weights is another network.
        self.portable_hash = portable_hash(weights_hash, exact) if self._ranges else b""
        self.tile = tile
        self.batch = batch

    @classmethod
    def load(cls, model: str, device: str = "cpu", tile: int = DEFAULT_TILE, batch: int = DEFAULT_BATCH) -> "FlowCoder":
        """The coder of a named model (or a path to its weights), its hash checked."""
        m, card = load_model(model)
        return cls(m, card.name, card.sha256, device=device, tile=tile, batch=batch, exact=card.exact)

    def accepts(self, height: int, width: int, channels: int) -> bool:
        """Any shape, where the model has an exact form to write it with."""
        return self.portable

    def check_named(self) -> None:
        """Raise NfcError where this model bears a shipped model's name but not its weights."""
        if self._misnamed:
            # Its files would leave the name out and point decoders at the shipped model.
            raise NfcError(
                f"this model is named {self.name!r} but is not the shipped {self.name!r} (other weights): "
                "give it a name of its own (its card's name, or train --name)"
            )

    def check_writable(self) -> None:
        """Raise NfcError where this model may not write files, saying why."""
        self.check_named()
        if not self.portable:
            raise NfcError(_NO_PORTABLE_FORM.format(name=self.name))

    def _device_kind(self) -> str:
        return torch.device(self.device).type

    def _net(self, portable: bool) -> IDF:
        """The network a file's kind needs: the exact integer copy for portable files (made on first
        use, on the CPU whatever the coder's device: only the CPU's exact sums are proven alike)."""
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
    def encode(self, colour: np.ndarray, progress: Progress = None, effort: int = 1) -> Payload:
        """The payload of (H, W, 1 or 3) colour planes; `progress(done, total)` after each network run."""
        return self.encode_many([colour], progress, effort)[0]

    @torch.no_grad()
    def encode_many(self, colours: list[np.ndarray], progress: Progress = None, effort: int = 1) -> list[Payload]:
        """`encode` of each, the same bytes, faster for small ones: they share network runs."""
        self.check_writable()
        with self.lock:
            return self._encode(colours, progress, effort, True)

    def _encode(self, colours: list[np.ndarray], progress: Progress, effort: int, portable: bool) -> list[Payload]:
        m = self.model.config.multiple
        jobs = []
        for i, colour in enumerate(colours):
            rgb = as_rgb(colour)
            jobs += [(i, rgb, tiles) for tiles in plan_tiles(*rgb.shape[:2], self.tile, self.batch, m)]
        groups = runs([(len(t), tile_shape(t, m) if portable else None) for _, _, t in jobs], self.batch)
        coded: list[tuple[bytes, float]] = [(b"", 0.0)] * len(jobs)
        for r, run in enumerate(groups):
            x = np.concatenate([padded(jobs[j][1], jobs[j][2], m) for j in run])
            for j, out in zip(run, self._encode_chunks(x, [len(jobs[j][2]) for j in run], effort, portable)):
                coded[j] = out
            if progress:
                progress(r + 1, len(groups))
        per_image: list[list[tuple[bytes, float]]] = [[] for _ in colours]
        for (i, _, _), c in zip(jobs, coded):
            per_image[i].append(c)
        fields = {
            "model_name": self.name,
            "model_hash": self.portable_hash if portable else self.hash,
            "tile": self.tile,
            "batch": self.batch,
            "device": "any" if portable else self._device_kind(),
            "oriented": effort > 1,
        }
        return [
            Payload(self.kind, [data for data, _ in c], sum(bits for _, bits in c), fields=dict(fields))
            for c in per_image
        ]

    @torch.no_grad()
    def ideal_bits(self, colour: np.ndarray, effort: int = 1) -> float:
        """The model's -log2 P of colour planes as `encode` would code them."""
        if not self.portable:
            raise NfcError(_NO_PORTABLE_FORM.format(name=self.name))
        rgb = as_rgb(colour)
        m = self.model.config.multiple
        bits = 0.0
        for tiles in plan_tiles(rgb.shape[0], rgb.shape[1], self.tile, self.batch, m):
            x = torch.from_numpy(padded(rgb, tiles, m)).float()
            with self.lock:
                bits += float(self._choose(x, effort, True)[3].sum())
        return bits

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
            push_latents(encoders, spans(starts, len(values) // len(x)), values, _tables(p, portable=portable))
        out = []
        for enc, a, b in zip(encoders, starts, starts[1:]):
            if effort > 1:
                enc.push_symbols(np.array(ks[a:b]), ORIENTATIONS)
            out.append((enc.finish(), float(bits[a:b].sum())))
        return out

    def check(self, header: Header) -> None:
        """Raise ModelMismatch unless a flow file was made with this model (and kind of device)."""
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
    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes of a flow payload (the file's parsed header and chunks)."""
        out = self.decode_many([(header, chunks)], progress)[0]
        if isinstance(out, NfcError):
            raise out
        return out

    @torch.no_grad()
    def decode_many(
        self, files: list[tuple[Header, list[bytes]]], progress: Progress = None
    ) -> list[np.ndarray | NfcError]:
        """`decode` of each, faster for small ones (portable files share network runs); a file
        that fails gives its NfcError in its place."""
        with self.lock:
            return self._decode(files, progress)

    def float_threads(self) -> Iterator[int]:
        """Set torch's thread count to each other count a float file may have been coded with
        (the float kernels split their sums by it), up to the CPU's; restored at the end."""
        old = torch.get_num_threads()
        try:
            for n in FLOAT_THREADS:
                if n != old and n <= (os.cpu_count() or 1):
                    torch.set_num_threads(n)
                    yield n
        finally:
            torch.set_num_threads(old)

    def _decode(self, files: list[tuple[Header, list[bytes]]], progress: Progress) -> list[np.ndarray | NfcError]:
        m = self.model.config.multiple
        results: list[np.ndarray | NfcError | None] = [None] * len(files)
        planes, jobs = {}, []
        for i, (header, chunks) in enumerate(files):
            try:
                self.check(header)
                if header.batch < 1 or header.tile < m:
                    raise FormatError(f"corrupted .nfc file: tiles of {header.tile} in runs of {header.batch}")
                expected = count_chunks(header.height, header.width, header.tile, header.batch, m)
                if expected != len(chunks):
                    raise FormatError(f"corrupted .nfc file: {len(chunks)} chunks where the tiling needs {expected}")
            except NfcError as e:
                results[i] = e
                continue
            planes[i] = np.empty((header.height, header.width, 3), np.uint8)
            plan = plan_tiles(header.height, header.width, header.tile, header.batch, m)
            jobs += [(i, tiles, chunk) for tiles, chunk in zip(plan, chunks)]
        keys = [(len(t), tile_shape(t, m) if files[i][0].device == "any" else None) for i, t, _ in jobs]
        groups = runs(keys, self.batch)
        for r, run in enumerate(groups):
            self._decode_run([j for j in run if results[jobs[j][0]] is None], jobs, files, planes, results)
            if progress:
                progress(r + 1, len(groups))
        for i, rgb in planes.items():
            if results[i] is None:
                header = files[i][0]
                grey = header.colour_channels == 1
                if grey and not (rgb[..., 0:1] == rgb[..., 1:]).all():
                    results[i] = ChecksumError(undecodable("decoded grey image is not grey", header.device == "any"))
                else:
                    results[i] = rgb[..., :1] if grey else rgb
        return results

    def _decode_run(self, run: list[int], jobs: list, files: list, planes: dict, results: list) -> None:
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
                *tile_shape(jobs[run[0]][1], m),
                [files[jobs[j][0]][0].oriented for j in run],
                legacy,
                portable,
            )
        except NfcError as e:
            # A run of several files failed: decode each alone, so that each gets its own verdict.
            for i in owners:
                results[i] = e if len(owners) == 1 else self._decode([files[i]], None)[0]
            return
        for j, tiles in zip(run, np.split(out, np.cumsum(counts)[:-1])):
            rgb = planes[jobs[j][0]]
            for t, tile in zip(jobs[j][1], tiles):
                rgb[t.y : t.y + t.h, t.x : t.x + t.w] = tile[:, : t.h, : t.w].transpose(1, 2, 0)

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
            values = pop_latents(decs, spans(starts, int(np.prod(shape[1:]))), _tables(p, legacy, portable))
            return torch.from_numpy(values.reshape(shape)).to(raw.device).float()

        try:
            x = model.decode(draw)
        except (ValueError, RuntimeError, OverflowError) as e:
            raise ChecksumError(undecodable(f"the payload does not decode: {e}", portable)) from None
        if not all(d.exhausted() for d in decs):
            raise ChecksumError(undecodable("data left over after decoding", portable))
        x = torch.stack([unorient(t, int(k)) for t, k in zip(x.round(), ks)])
        if x.min() < 0 or x.max() > 255:
            raise ChecksumError(undecodable("decoded pixels out of range", portable))
        return x.to(torch.uint8).cpu().numpy()


def as_rgb(colour: np.ndarray) -> np.ndarray:
    """Colour planes as the flow codes them, (H, W, 3): a grey plane three times."""
    if colour.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(colour, 3, axis=2))
    return np.ascontiguousarray(colour)


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
