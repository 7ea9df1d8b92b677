"""The screen model (`model`), for screenshots and computer-made graphics, as a `Coder`."""

__all__ = ["ScreenCoder"]

import numpy as np

from nfcompress.coders.base import Payload, Progress
from nfcompress.container import Header


class ScreenCoder:
    """Each pixel as the neighbour it repeats, a palette colour, or a new one: any image."""

    kind = "screen"

    def accepts(self, height: int, width: int, channels: int) -> bool:
        """Every shape."""
        return True

    def encode(self, colour: np.ndarray, progress: Progress = None) -> Payload:
        """The payload."""
        from nfcompress.coders.screen import model  # (its compiled loops load only when it codes)

        data, bits = model.encode(colour)
        return Payload(self.kind, [data], bits)

    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes, by the payload scheme of the file's version."""
        from nfcompress.coders.screen import model

        scheme = model.SCHEMES.get(header.version, model.SCHEME)
        return model.decode(chunks[0], header.height, header.width, header.colour_channels, scheme)
