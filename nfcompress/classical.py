"""Classical lossless codecs (PNG, WebP lossless, JPEG XL) for comparison, each round-trip checked."""

__all__ = ["CODECS", "available", "encode_classical"]

import io
from collections.abc import Callable

import numpy as np
from PIL import Image


def _png(img: np.ndarray) -> tuple[bytes, Callable[[bytes], np.ndarray]]:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=True)
    return buf.getvalue(), lambda b: np.asarray(Image.open(io.BytesIO(b)))


def _webp(img: np.ndarray) -> tuple[bytes, Callable[[bytes], np.ndarray]]:
    buf = io.BytesIO()
    im = Image.fromarray(img)
    im.save(buf, format="WEBP", lossless=True, quality=100, method=6, exact=True)
    # WebP holds RGB(A) only: a grey image comes back as RGB with three equal planes.
    return buf.getvalue(), lambda b: np.asarray(Image.open(io.BytesIO(b)).convert(im.mode))


def _jxl(img: np.ndarray) -> tuple[bytes, Callable[[bytes], np.ndarray]]:
    import imagecodecs

    data = imagecodecs.jpegxl_encode(img, lossless=True, effort=7)
    return bytes(data), imagecodecs.jpegxl_decode


CODECS: dict[str, Callable[[np.ndarray], tuple[bytes, Callable[[bytes], np.ndarray]]]] = {
    "png": _png,
    "webp": _webp,
    "jxl": _jxl,
}


def available() -> list[str]:
    """The classical codecs this install can run (JPEG XL needs the `bench` extra)."""
    names = ["png", "webp"]
    try:
        import imagecodecs

        if imagecodecs.JPEGXL.available:
            names.append("jxl")
    except ImportError:
        pass
    return names


def encode_classical(name: str, img: np.ndarray) -> tuple[bytes, Callable[[bytes], np.ndarray]]:
    """Encode an (H, W, C) uint8 array; returns the file bytes and the matching decoder."""
    return CODECS[name](img)
