"""Pillow in and out: which modes code losslessly, size limits, atomic writes."""

__all__ = ["load_image", "image_to_png_bytes", "atomic_write", "set_max_pixels"]

import contextlib
import io
import os
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nfcompress.errors import NfcError

# Modes that convert to one we code with no loss at all.
_LOSSLESS = {"1": "L", "L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "PA": "RGBA", "La": None, "RGBa": None}


def set_max_pixels(limit: int | None) -> None:
    """Pillow's decompression-bomb limit (None lifts it)."""
    Image.MAX_IMAGE_PIXELS = limit


def _from_pil(im: Image.Image, name: str) -> np.ndarray:
    if getattr(im, "n_frames", 1) > 1:
        raise NfcError(f"{name}: has {im.n_frames} frames; only single-frame images are supported")
    mode = im.mode
    if mode == "P":
        target = "RGBA" if "transparency" in im.info else "RGB"
    else:
        target = _LOSSLESS.get(mode)
    if target is None:
        why = "16-bit or float" if mode.startswith(("I", "F")) else mode
        raise NfcError(
            f"{name}: cannot code {why} images (mode {mode}) losslessly; only 8-bit L, LA, RGB, RGBA and palette images"
        )
    return np.asarray(im.convert(target) if target != mode else im)


def load_image(source: "str | os.PathLike | bytes | Image.Image | np.ndarray") -> np.ndarray:
    """An image as a uint8 array (H, W) or (H, W, 2|3|4): from a path, bytes, PIL image or array."""
    if isinstance(source, np.ndarray):
        return source
    if isinstance(source, Image.Image):
        return _from_pil(source, "image")
    name = "stdin" if isinstance(source, bytes) else str(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            fp = io.BytesIO(source) if isinstance(source, bytes) else source
            with Image.open(fp) as im:
                im.load()
                return _from_pil(im, name)
    except FileNotFoundError:
        raise NfcError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise NfcError(f"{name}: is a folder, not an image") from None
    except PermissionError:
        raise NfcError(f"{name}: permission denied") from None
    except UnidentifiedImageError:
        raise NfcError(f"{name}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NfcError(
            f"{name}: larger than the decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels "
            "(--max-pixels 0 lifts it)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise NfcError(f"{name}: cannot read image ({e})") from None


def image_to_png_bytes(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array, mode taken from its shape."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _mode_for(path: Path) -> int:
    """The permissions a written file gets, as cp gives them: a replaced file's own, else what
    the umask allows of rw-rw-rw- (mkstemp's temporary file would stay private, 0600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: Path, data: bytes, force: bool = False) -> None:
    """Write a file whole or not at all: a temporary file beside it, then a rename.

    Refuses to replace an existing file unless `force`; a failure or an interrupt leaves the
    target as it was and no temporary file behind.
    """
    path = Path(path)
    if path.exists() and not force:
        raise NfcError(f"{path}: already exists (use --force to overwrite)")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise NfcError(f"{path}: folder {directory} does not exist")
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise NfcError(f"{path}: cannot write ({e.strerror or e})") from None
        raise
