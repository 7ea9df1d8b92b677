"""The screen model's learned prior: the counts each context starts from, learned from screenshots.

A context the model has not met in an image starts from what it held over the training
screenshots: `MASS` / STEP symbols' worth of their distribution (plus 1 each), where without the
prior every count starts at 1. The counts are integers in a safetensors file beside this module,
with a JSON card (`prior.json`) that says what they were learned from and what they measured;
scripts/train_screen_prior.py writes both. A payload version names its prior by the file's sha256,
which loading checks: the decoder must start from exactly the encoder's counts.
"""

__all__ = ["MASS", "PRIOR_FILE", "TABLES", "from_occurrences", "load", "save"]

import functools
import json
from pathlib import Path

import numpy as np

from nfcompress.errors import NfcError
from nfcompress.model_files import sha256_file

PRIOR_FILE = Path(__file__).with_name("prior.safetensors")
MASS = 64 * 24  # a context's prior weighs as 64 symbols (STEP 24 each)
TABLES = ("slots", "coarse", "fresh", "ranks", "raw")  # the counts of `model._State` it sets


def from_occurrences(occurrences: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Initial counts from symbol occurrences per context (the last axis the symbols): 1 plus
    floor(MASS x each symbol's share), integers only; 1 everywhere in a context never met."""
    out = {}
    for name, occ in occurrences.items():
        occ = occ.astype(np.int64)
        out[name] = 1 + MASS * occ // np.maximum(occ.sum(-1, keepdims=True), 1)
    return out


def save(counts: dict[str, np.ndarray], card: dict, path: Path = PRIOR_FILE) -> str:
    """Write initial counts (only the contexts that differ from all ones) and their card; the
    file's sha256."""
    from safetensors.numpy import save_file

    tensors = {}
    for name, c in counts.items():
        rows = c.reshape(-1, c.shape[-1])
        met = np.flatnonzero((rows != 1).any(1))
        tensors[f"{name}.shape"] = np.array(c.shape, np.int32)
        tensors[f"{name}.rows"] = met.astype(np.int32)
        tensors[f"{name}.counts"] = rows[met].astype(np.int32)
    save_file(tensors, str(path))
    digest = sha256_file(path)
    path.with_suffix(".json").write_text(json.dumps({**card, "sha256": digest}, indent=1) + "\n")
    return digest


@functools.cache
def load(sha256: str, path: Path = PRIOR_FILE) -> dict[str, np.ndarray]:
    """The initial counts of the prior whose file has this sha256 (read-only arrays); a clear
    error where the file is missing or not that one."""
    from safetensors.numpy import load_file

    if not path.exists() or sha256_file(path) != sha256:
        raise NfcError(f"the screen model's prior {path} is missing or damaged: reinstall nfcompress")
    tensors = load_file(str(path))
    out = {}
    for name in TABLES:
        shape = tuple(int(n) for n in tensors[f"{name}.shape"])
        rows = np.ones((int(np.prod(shape[:-1])), shape[-1]), np.int64)
        rows[tensors[f"{name}.rows"]] = tensors[f"{name}.counts"]
        out[name] = rows.reshape(shape)
        out[name].flags.writeable = False
    return out
