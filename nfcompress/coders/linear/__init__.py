"""The per-image linear model (`model`) and its local predictor (`local`), as a `Coder`."""

__all__ = ["LinearCoder"]

import numpy as np

from nfcompress.coders.base import Payload, Progress
from nfcompress.coders.linear import model
from nfcompress.container import Header

# The payload scheme of each format version that wrote one; later versions write model.SCHEME.
SCHEMES = {6: 1, 7: 2}


class LinearCoder:
    """Each sub-pixel predicted from decoded neighbours by weights fitted to the image: any image."""

    kind = "linear"

    def accepts(self, height: int, width: int, channels: int) -> bool:
        """Every shape: the model needs no more than one pixel."""
        return True

    def encode(self, colour: np.ndarray, progress: Progress = None, fit: model.Fitted | None = None) -> Payload:
        """The payload, with each pixel's ideal bits (side information aside), under the model
        `fit` holds (`model.fitted`) or one fitted now."""
        data, pixel_bits, side = model.encode(colour, progress=progress, fit=fit)
        return Payload(self.kind, [data], float(pixel_bits.sum()) + side, pixel_bits)

    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes, by the payload scheme of the file's version."""
        scheme = SCHEMES.get(header.version, model.SCHEME)
        return model.decode(chunks[0], header.height, header.width, header.colour_channels, progress, scheme)
