"""The causal model (`model`; its training in `train`), as a `Coder`."""

__all__ = ["CausalCoder"]

import numpy as np

from nfcompress.coders.base import Payload, Progress
from nfcompress.coders.causal import model
from nfcompress.container import Header


class CausalCoder:
    """A small network in exact integer arithmetic reading decoded neighbours: small colour images."""

    kind = "causal"

    def accepts(self, height: int, width: int, channels: int) -> bool:
        """Colour images of at most model.MAX_PIXELS pixels that are not thin strips."""
        return channels == 3 and model.fits(height, width)

    def encode(self, colour: np.ndarray, progress: Progress = None) -> Payload:
        """The payload."""
        data, bits = model.encode(colour)
        return Payload(self.kind, [data], bits)

    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes."""
        return model.decode(chunks[0], header.height, header.width)
