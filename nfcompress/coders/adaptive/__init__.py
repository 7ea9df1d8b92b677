"""The adaptive model (`model`: the causal model's network over the linear model's fitted
predictions; its training in `train`), as a `Coder`."""

__all__ = ["AdaptiveCoder"]

import numpy as np
from threadpoolctl import threadpool_limits

from nfcompress.coders.adaptive import model
from nfcompress.coders.base import Payload, Progress
from nfcompress.coders.linear import model as linear
from nfcompress.container import Header


class AdaptiveCoder:
    """A network in exact integer arithmetic over decoded neighbours and a prediction fitted to
    the image: photos of any size but thin strips, colour or grey."""

    kind = "adaptive"

    def accepts(self, height: int, width: int, channels: int) -> bool:
        """Every image but thin strips (`model.fits`)."""
        return model.fits(height, width)

    def encode(self, colour: np.ndarray, progress: Progress = None, fit: linear.Fitted | None = None) -> Payload:
        """The payload, with each pixel's ideal bits (side information aside), over the linear
        model `fit` holds (`linear.fitted`) or one fitted now; `progress(done, channels)` after
        each channel."""
        with threadpool_limits(1, "blas"):  # the network's many small products: threads only wait
            data, pixel_bits, side = model.encode(colour, fit=fit, progress=progress)
        return Payload(self.kind, [data], float(pixel_bits.sum()) + side, pixel_bits)

    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes."""
        with threadpool_limits(1, "blas"):
            return model.decode(chunks[0], header.height, header.width, header.colour_channels, progress=progress)
