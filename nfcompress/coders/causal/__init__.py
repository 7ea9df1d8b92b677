"""The causal model (`model`; its training in `train`), as a `Coder`."""

__all__ = ["CausalCoder"]

import functools

import numpy as np

from nfcompress.coders.base import Payload, Progress
from nfcompress.coders.causal import model
from nfcompress.container import Header
from nfcompress.errors import NfcError
from nfcompress.threads import one_blas_thread


class CausalCoder:
    """A small network in exact integer arithmetic reading decoded neighbours: small images."""

    kind = "causal"

    def accepts(self, height: int, width: int, channels: int) -> bool:
        """Colour and grey images of at most model.MAX_PIXELS pixels that are not thin strips."""
        return channels in (1, 3) and model.fits(height, width)

    def encode(self, colour: np.ndarray, progress: Progress = None) -> Payload:
        """The payload."""
        with one_blas_thread():
            data, bits, kept = model.encode(colour, keep=True)
        return Payload(self.kind, [data], bits, replay=functools.partial(self._replay, kept))

    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes."""
        with one_blas_thread():
            return model.decode(
                chunks[0], header.height, header.width, version=header.version, channels=header.colour_channels
            )

    @staticmethod
    def _replay(kept: tuple, header: Header, chunks: list[bytes]) -> np.ndarray:
        """The colour planes of a payload `encode` made, checked with the intervals it kept."""
        return model.replay(chunks[0], header.height, header.width, kept, header.colour_channels)

    def decode_many(self, payloads: list[tuple[Header, list[bytes]]]) -> list[np.ndarray | NfcError]:
        """`decode` of each payload, or the NfcError that says why not; those of one size (and
        format version and channel count) decode together, several times faster on thumbnails."""
        out: list[np.ndarray | NfcError | None] = [None] * len(payloads)
        sizes: dict[tuple[int, int, int, int], list[int]] = {}
        for n, (header, _) in enumerate(payloads):
            sizes.setdefault((header.height, header.width, header.version, header.colour_channels), []).append(n)
        for (h, w, version, channels), ns in sizes.items():
            with one_blas_thread():
                decoded = model.decode_many([payloads[n][1][0] for n in ns], h, w, version=version, channels=channels)
            for n, colour in zip(ns, decoded):
                out[n] = colour
        return out
