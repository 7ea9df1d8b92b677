"""nfcompress: lossless image compression with an integer discrete flow.

>>> import nfcompress
>>> data = nfcompress.encode("photo.png")      # doctest: +SKIP
>>> pixels = nfcompress.decode(data)           # doctest: +SKIP
"""

__all__ = [
    "__version__",
    "encode",
    "decode",
    "Codec",
    "EncodeResult",
    "load_image",
    "NfcError",
    "FormatError",
    "ModelMismatch",
    "ChecksumError",
]

import importlib

__version__ = "0.29.0"

# Loaded on first use, so `nfcompress --help` does not wait for torch.
_LAZY = {
    "encode": "nfcompress.api",
    "decode": "nfcompress.api",
    "Codec": "nfcompress.codec",
    "EncodeResult": "nfcompress.codec",
    "load_image": "nfcompress.io",
    "NfcError": "nfcompress.errors",
    "FormatError": "nfcompress.errors",
    "ModelMismatch": "nfcompress.errors",
    "ChecksumError": "nfcompress.errors",
}


def _register_pillow() -> None:
    from nfcompress.pillow_plugin import register

    register()


_register_pillow()


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nfcompress' has no attribute {name!r}")
