"""Model files: safetensors weights beside a JSON card, found by name and checked by hash."""

__all__ = [
    "DEFAULT_MODEL",
    "ModelCard",
    "models_dir",
    "save_model",
    "save_card",
    "load_model",
    "sha256_file",
    "portable_hash",
    "round_to_half",
    "model_of",
    "shipped_sha256",
    "shipped_dir",
]

import functools
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nfcompress.container import SHIPPED_MODELS, Header
from nfcompress.errors import ModelMismatch, NfcError
from nfcompress.flows import IDF, IDFConfig
from nfcompress.flows.exact import ALGORITHM, LEVELS
from nfcompress.model_files import DEFAULT_MODEL, ModelCard, find_card, models_dir, sha256_file, shipped_dir


def round_to_half(model: torch.nn.Module) -> None:
    """Round every floating tensor of a model to the nearest float16 (kept as float32), in place.

    `save_model` then stores them in half the bytes; float16 holds them exactly, so the loaded
    model computes the same floats as the one rounded here.
    """
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                half = t.half()
                if not bool(torch.isfinite(half).all()):
                    raise ValueError(f"{name} holds values beyond float16's range (65504)")
                t.copy_(half)


def _stored(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's tensors as saved: all in float16 when that holds every one exactly, else as they are."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    floats = [v for v in state.values() if v.is_floating_point()]
    if all(v.dtype == torch.float32 and torch.equal(v.half().float(), v) for v in floats):
        return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return state


def save_model(model: IDF, path: Path, card: ModelCard) -> ModelCard:
    """Write `path` (.safetensors) and its card (.json beside it), the card holding the hash.

    A model whose tensors float16 holds exactly (after `round_to_half`) is stored in float16.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _stored(model)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"name": card.name})
    os.replace(tmp, path)
    card.sha256 = sha256_file(path)
    card.config = model.config.to_dict()
    save_card(path, card)
    return card


def save_card(path: Path, card: ModelCard) -> None:
    """Rewrite the card beside weights `path` (.safetensors), which stay as they are."""
    path = Path(path).with_suffix(".json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(card.to_json())
    os.replace(tmp, path)


def load_model(name_or_path: str | Path = DEFAULT_MODEL) -> tuple[IDF, ModelCard]:
    """Load a model by name (from `models_dir()`) or by .safetensors path, checking its hash."""
    path, card = find_card(name_or_path)
    try:
        config = IDFConfig.from_dict(card.config)
    except (ValueError, TypeError) as e:
        raise NfcError(f"model card {path.with_suffix('.json')} is not valid: {e}") from None
    digest = sha256_file(path)
    if card.sha256 and digest != card.sha256:
        raise NfcError(f"model weights {path} do not match the sha256 in their card")
    card.sha256 = digest
    model = IDF(config)
    try:
        state = load_file(str(path))
        model.load_state_dict(state)
    except Exception as e:  # safetensors and torch raise several types for a bad file
        raise NfcError(f"model weights {path} could not be loaded: {e}") from None
    model.eval()
    return model, card


def portable_hash(weights_hash: str, exact: dict) -> bytes:
    """The first bytes of a hash of the weights' sha256 and the exact form (algorithm, levels, ranges)."""
    spec = json.dumps(
        {"algorithm": ALGORITHM, "levels": exact.get("levels", LEVELS), "ranges": exact["ranges"]}, sort_keys=True
    )
    return hashlib.sha256((weights_hash + spec).encode()).digest()[:4]


def _shipped_card(name: str) -> dict:
    """The card of a shipped model as installed ({} where it is missing or unreadable)."""
    try:
        card = json.loads((shipped_dir() / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def shipped_sha256(name: str) -> str:
    """The sha256 of the installed weights of a shipped model ("" where it is missing)."""
    return _shipped_hashes(name)[0].hex()


@functools.cache
def _shipped_hashes(name: str) -> tuple[bytes, bytes]:
    """A shipped model's weights hash and portable hash as files hold them (b"" where unknown)."""
    card = _shipped_card(name)
    sha, exact = str(card.get("sha256", "")), card.get("exact") or {}
    try:
        weights = bytes.fromhex(sha)
    except ValueError:
        return b"", b""  # a damaged card cannot be any file's model
    return weights, portable_hash(sha, exact) if weights and "ranges" in exact else b""


def model_of(header: Header) -> str:
    """The name of the model a file needs: its own, or the shipped model its hash identifies
    (the default for a file of the linear model, which needs none)."""
    if header.model_free:
        return DEFAULT_MODEL
    if header.model_name:
        return header.model_name
    for name in SHIPPED_MODELS:
        ours = _shipped_hashes(name)[1 if header.device == "any" else 0]
        if ours and ours[: len(header.model_hash)] == header.model_hash:
            return name
    raise ModelMismatch(
        f"this file needs a model shipped with nfcompress (hash {header.model_hash.hex()}) that this "
        f"installation lacks (it has {', '.join(SHIPPED_MODELS)}): a newer nfcompress may have it"
    )


def hash_state(model: torch.nn.Module) -> str:
    """sha256 of a model's tensors, for models that never touched a file (tests, training)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
