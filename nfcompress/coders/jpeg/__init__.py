"""JPEG-history recovery (`model`, with libjpeg's tables in `libjpeg`), as a `Coder`."""

__all__ = ["JpegCoder", "Survey"]

from typing import NamedTuple

import numpy as np

from nfcompress.coders.base import Payload, Progress
from nfcompress.coders.jpeg import model
from nfcompress.container import Header


class Survey(NamedTuple):
    """What an image's JPEG history looks like: the fitted JPEG, and its cost on a central crop."""

    jpeg: model.JpegModel
    crop: np.ndarray
    crop_bits: float


class JpegCoder:
    """The JPEG an image once was (its quantizer steps and coefficients), and the error left."""

    kind = "jpeg"

    def accepts(self, height: int, width: int, channels: int) -> bool:
        """Images of at least MIN_SIDE on each side (smaller ones cost more in counts than they save)."""
        return min(height, width) >= model.MIN_SIDE

    def survey(self, colour: np.ndarray, progress: Progress = None) -> Survey | None:
        """The JPEG the image shows, or None where it shows none; `progress(done, 4)` after each
        of three stages (the encode is the fourth)."""
        try:
            chosen = model.choose(colour, progress)
        except ValueError:  # a value too wide for the model: no JPEG made these pixels
            return None
        return Survey(*chosen) if chosen else None

    def encode(self, colour: np.ndarray, progress: Progress = None, survey: Survey | None = None) -> Payload | None:
        """The payload (surveyed first unless `survey` is given), or None where no JPEG shows."""
        survey = survey or self.survey(colour, progress)
        if survey is None:
            return None
        try:
            data, bits = model.encode(colour, survey.jpeg)
        except ValueError:
            return None
        return Payload(self.kind, [data], bits)

    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes."""
        return model.decode(chunks[0], header.height, header.width, header.colour_channels, progress)
