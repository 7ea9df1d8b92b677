"""The adaptive model (`model`: the causal model's network over the linear model's fitted
predictions; its training in `train`), as a `Coder`."""

__all__ = ["AdaptiveCoder"]

import functools

import numpy as np

from nfcompress.coders.adaptive import model
from nfcompress.coders.base import Payload, Progress
from nfcompress.coders.linear import model as linear
from nfcompress.container import Header
from nfcompress.threads import one_blas_thread, share


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
        with one_blas_thread():
            data, pixel_bits, side, kept = model.encode(colour, fit=fit, progress=progress, keep=True, threads=share())
        replay = kept and functools.partial(self._replay, kept)
        return Payload(self.kind, [data], float(pixel_bits.sum()) + side, pixel_bits, replay=replay)

    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes."""
        with one_blas_thread():
            return model.decode(
                chunks[0],
                header.height,
                header.width,
                header.colour_channels,
                progress=progress,
                version=header.version,
            )

    @staticmethod
    def _replay(kept: model.Kept, header: Header, chunks: list[bytes]) -> np.ndarray:
        """The colour planes of a payload `encode` made, decoded with the network's outputs it kept."""
        return model.decode(chunks[0], header.height, header.width, header.colour_channels, kept=kept)
