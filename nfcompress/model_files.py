"""Model files without torch: where they live, their JSON cards, their hashes. The codec finds a
model's card before it needs the weights, and the causal model checks its weights here."""

__all__ = [
    "DEFAULT_MODEL",
    "PAYLOAD_MODELS",
    "payload_model",
    "pinned",
    "ModelCard",
    "shipped_dir",
    "models_dir",
    "sha256_file",
    "find_card",
]

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TypeVar

from nfcompress.container import SHIPPED_MODELS
from nfcompress.errors import NfcError

T = TypeVar("T")

# New files use the newest shipped model; the older ones stay for the files they wrote.
DEFAULT_MODEL = SHIPPED_MODELS[-1]
# The shipped networks that model-free payloads are bound to, by payload kind and the first format
# version whose files of that kind decode with them (each file names none: its format version pins
# the weights' sha256 in the model's package).
PAYLOAD_MODELS = {
    "causal": {10: "nfc-causal", 15: "nfc-causal-2", 16: "nfc-causal-3"},
    "adaptive": {
        13: "nfc-adaptive",
        14: "nfc-adaptive-96",
        16: "nfc-adaptive-3",
        17: "nfc-adaptive-4",
        18: "nfc-adaptive-5",
        19: "nfc-adaptive-6",
        20: "nfc-adaptive-7",
    },
}


def pinned(by_version: dict[int, T], version: int) -> T | None:
    """The entry of the newest format version at or before `version` (None: none): each entry
    holds for the files of its version and of every later one up to the next entry's."""
    return next((by_version[v] for v in sorted(by_version, reverse=True) if v <= version), None)


def payload_model(kind: str, version: int) -> str | None:
    """The shipped network a model-free file of this kind and format version decodes with (None: none)."""
    return pinned(PAYLOAD_MODELS.get(kind, {}), version)


@dataclass
class ModelCard:
    """What a model is and how it was made; written by training, read on load."""

    name: str
    config: dict
    sha256: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    # The portable (integer) network's calibration: {"levels": ..., "ranges": {conv: [lo, hi]}}.
    exact: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """Pretty JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


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


def models_dir() -> Path:
    """Where named models live: $NFCOMPRESS_MODELS, else the shipped `models/` folder."""
    env = os.environ.get("NFCOMPRESS_MODELS")
    return Path(env) if env else shipped_dir()


def resolve(name_or_path: str | Path) -> Path:
    """The weights file of a model named (in `models_dir()`) or given by path."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.suffix == ".json":
        return p.with_suffix(".safetensors")
    if p.exists() and p.is_dir():
        raise NfcError(f"{p} is a folder, not a model")
    path = models_dir() / f"{p.name}.safetensors"
    if not path.is_file() and p.name in SHIPPED_MODELS:
        return shipped_dir() / path.name  # shipped models load by name from any models folder
    return path


def find_card(name_or_path: str | Path) -> tuple[Path, ModelCard]:
    """A model's weights path and its card, read (the weights are neither read nor checked)."""
    path = resolve(name_or_path)
    card_path = path.with_suffix(".json")
    if not path.is_file() or not card_path.is_file():
        here = sorted(p.stem for p in path.parent.glob("*.safetensors") if p.with_suffix(".json").is_file())
        raise NfcError(
            f"model {str(name_or_path)!r} not found (looked for {path} and its .json card; "
            f"{'models there: ' + ', '.join(here) if here else 'no models there'})"
        )
    try:
        card = ModelCard(**json.loads(card_path.read_text()))
    except (ValueError, TypeError) as e:
        raise NfcError(f"model card {card_path} is not valid: {e}") from None
    return path, card
