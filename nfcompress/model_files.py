"""Where the shipped model files live and how a model file is hashed: no torch, so the models
that need none (the causal model) check their weights the way the flow's are checked."""

__all__ = ["shipped_dir", "sha256_file"]

import hashlib
from importlib.resources import files
from pathlib import Path


def shipped_dir() -> Path:
    """The folder of the models shipped with nfcompress."""
    return Path(str(files("nfcompress.models")))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
