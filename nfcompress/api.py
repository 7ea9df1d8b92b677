"""The library in two calls: `encode` and `decode`, with codecs cached per model and device."""

__all__ = ["encode", "decode", "get_codec"]

import functools

import numpy as np

from nfcompress.codec import Codec, decode_model_free
from nfcompress.container import unpack
from nfcompress.io import load_image
from nfcompress.model_files import DEFAULT_MODEL
from nfcompress.policy import DEFAULT_EFFORT


def get_codec(model: str = "", device: str = "cpu") -> Codec:
    """The codec for a model name or path ('' is the shipped default), loaded once."""
    return _cached(model or DEFAULT_MODEL, device)


@functools.lru_cache(maxsize=4)
def _cached(model: str, device: str) -> Codec:
    return Codec.load(model, device=device)


def encode(
    image,
    model: str = "",
    device: str = "cpu",
    effort: int = DEFAULT_EFFORT,
    portable: bool | None = None,
    coder: str | None = None,
) -> bytes:
    """Compress an image (a path, a PIL image or a uint8 array) to .nfc bytes.

    Effort 1-3 trades encode time (1x, 2x, up to 8x the network work) for size: each tile is
    coded in the cheapest of up to 1, 2 or 8 orientations. Decoding costs the same at any effort.
    Files are portable: they decode alike on any machine (the flow runs as its calibrated exact
    integer form, as the shipped model has); `portable=False` is refused.
    `coder` "auto" (the default) keeps the smallest file of the models nfcompress.policy tries:
    the screen model first on screen content, the per-image linear model and the adaptive
    model over it (photos), the causal model (most thumbnails) and the flow; "flow", "linear",
    "adaptive", "causal" or "screen" uses one.

    Example:
        >>> import numpy as np, nfcompress
        >>> image = np.zeros((16, 16, 3), np.uint8)
        >>> data = nfcompress.encode(image)
        >>> data[:3]
        b'NFC'
        >>> bool((nfcompress.decode(data) == image).all())
        True
    """
    codec = get_codec(model, device)
    return codec.encode(load_image(image), effort=effort, portable=portable, coder=coder).data


def decode(data: bytes, model: str = "", device: str = "cpu") -> np.ndarray:
    """Decompress .nfc bytes to the exact uint8 array, or raise NfcError saying why not.

    The model is the one the file names (or, for a shipped model, identifies by its hash)
    unless `model` says otherwise; a file of another model needs none (nor torch).
    """
    data = bytes(data)
    header, chunks, alpha = unpack(data)
    if header.model_free:
        return decode_model_free(header, chunks, alpha)
    from nfcompress.weights import model_of

    return get_codec(model or model_of(header), device).decode(data)
