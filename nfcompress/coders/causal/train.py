"""The causal model's float network for training: the same layers as nfcompress.coders.causal.model's integer
one, and its loss, the bits of a batch of images under a discretized logistic mixture."""

__all__ = [
    "CausalNet",
    "batch_loss",
    "plane_outputs",
    "settings_of",
    "image_features",
    "float_layers",
    "export",
    "save_integer",
    "write_card",
]

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nfcompress.coders.causal.model import (
    CAUSAL,
    EDGE_FLAG,
    EXACT_LIMIT,
    NEWEST_NETWORK,
    PlaneWeights,
    canvas,
    dequantize,
    encode,
    feature_count,
    features,
    pad_planes,
    planes_of,
    quantize,
    save,
)
from nfcompress.data import eval_sets, list_images
from nfcompress.weights import sha256_file

INPUT_SCALE = 1.0 / EDGE_FLAG  # features enter the float network in units of 16 grey levels
MEAN_SCALE = 16.0  # a component's mean is the median prediction plus 16 times its output
LOG_SCALE_RANGE = (-4.0, 11.0)


def float_layers(pw: PlaneWeights) -> dict[str, torch.Tensor]:
    """One plane's integer network as a `PlaneNet`'s state (`dequantize`), to train it further."""
    return {name: torch.from_numpy(a).float() for name, a in dequantize(pw).items()}


class PlaneNet(nn.Module):
    """One plane's network: a hidden layer, a residual hidden layer, then per mixture component
    a mean, a log scale and a logit."""

    def __init__(self, inputs: int, hidden: int, mixtures: int) -> None:
        super().__init__()
        self.first = nn.Linear(inputs, hidden)
        self.second = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 3 * mixtures)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Features (n, inputs), in grey levels, -> outputs (n, 3 K)."""
        h = F.relu(self.first(f * INPUT_SCALE))
        h = F.relu(self.second(h)) + h
        return self.out(h)


class CausalNet(nn.Module):
    """The three planes' networks (green, red, blue)."""

    def __init__(self, hidden: int = 128, mixtures: int = 3) -> None:
        super().__init__()
        self.hidden, self.mixtures = hidden, mixtures
        self.planes = nn.ModuleList(PlaneNet(feature_count(k), hidden, mixtures) for k in range(3))


def settings_of(net: CausalNet) -> dict:
    """The architecture, as the card records it."""
    return {"hidden": net.hidden, "mixtures": net.mixtures}


def image_features(rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per plane (features, medians, targets) of every sub-pixel of an (H, W, 3) uint8 image."""
    planes = planes_of(rgb)
    h, w = planes.shape[1:]
    i, j = (a.ravel() for a in np.mgrid[0:h, 0:w])
    earlier = pad_planes(planes)
    out = []
    for k in range(3):
        f, base = features(canvas(planes, k), earlier[:k], k, i, j, w)
        out.append((f, base, planes[k].ravel()))
    return out


def mixture_bits(o: torch.Tensor, base: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log2 P(x) per sub-pixel under the discretized logistic mixture the outputs o (n, 3 K) give."""
    k = o.shape[1] // 3
    mean = base[:, None] + MEAN_SCALE * o[:, :k]
    log_scale = o[:, k : 2 * k].clamp(*LOG_SCALE_RANGE)
    log_w = F.log_softmax(o[:, 2 * k :], -1)
    inv = torch.exp(-log_scale)
    t = x[:, None]
    up = torch.where(t >= 255, torch.full_like(mean, 1e9), (t + 0.5 - mean) * inv)
    lo = torch.where(t <= 0, torch.full_like(mean, -1e9), (t - 0.5 - mean) * inv)
    # log(sigmoid(up) - sigmoid(lo)), stable where both are near 1
    mass = torch.sigmoid(up) - torch.sigmoid(lo)
    log_p = torch.log(mass.clamp_min(1e-12))
    return -torch.logsumexp(log_p + log_w, -1) / math.log(2)


def plane_outputs(plane: nn.Module, f: torch.Tensor, half: bool = False) -> torch.Tensor:
    """A plane network's outputs in float32; with `half` its products run in bfloat16 (twice as
    fast on a CPU with AVX-512 BF16, and on a GPU), the loss still taken in float32."""
    if not half:
        return plane(f)
    with torch.autocast(f.device.type, dtype=torch.bfloat16):
        return plane(f).float()


def batch_loss(net: CausalNet, images: np.ndarray, half: bool = False) -> torch.Tensor:
    """Mean bits per sub-pixel of a batch (n, H, W, 3) uint8 (`half`: `plane_outputs`)."""
    per = [image_features(im) for im in images]
    total = 0.0
    for k, plane in enumerate(net.planes):
        f = torch.from_numpy(np.concatenate([p[k][0] for p in per])).float()
        base = torch.from_numpy(np.concatenate([p[k][1] for p in per])).float()
        x = torch.from_numpy(np.concatenate([p[k][2] for p in per])).float()
        total = total + mixture_bits(plane_outputs(plane, f, half), base, x).sum()
    return total / images.size


def export(
    checkpoint: Path, out_dir: Path, val_dir: str, heldout: list[Path] | None = None, name: str = NEWEST_NETWORK[0]
) -> dict:
    """A float checkpoint (scripts/train_causal.py) as shipped integer weights and their card,
    which records the exact model's bits per sub-pixel (ideal, and of its payloads) on the fixed
    validation sets of `val_dir` (as the flow's card: 8 thumbnails of each size and native crops
    per photo) and of the held-out photos (4 per photo)."""
    ck, planes, bound = save_integer(checkpoint, out_dir, name)
    metrics: dict = {"parameters": sum(a.size for p in planes for a in vars(p).values())}
    for label, paths in (("bpsp", list_images([val_dir])), ("heldout_bpsp", heldout or [])):
        if not paths:
            continue
        sets = eval_sets(paths, per_photo=8 if label == "bpsp" else 4)
        metrics[label] = {}
        for kind in ("thumb32", "thumb64", "native64"):
            images = sets[kind].transpose(0, 2, 3, 1)
            ideal = payload = 0.0
            for im in images:
                data, bits, _ = encode(np.ascontiguousarray(im), planes)
                ideal, payload = ideal + bits, payload + 8 * len(data)
            metrics[label][kind] = {
                "images": len(images),
                "nfcompress_ideal": round(ideal / images.size, 4),
                "payload": round(payload / images.size, 4),
            }
    return write_card(out_dir, name, ck, bound, [feature_count(k) for k in range(3)], metrics)


def save_integer(checkpoint: Path, out_dir: Path, name: str) -> tuple[dict, list[PlaneWeights], float]:
    """A float checkpoint's integer networks (refused where a sum could reach EXACT_LIMIT), saved
    as out_dir/name.safetensors; the checkpoint, the networks and the largest sum they can form."""
    ck = torch.load(checkpoint, weights_only=True)
    state = {k: v.float().numpy() for k, v in ck["state"].items()}
    planes = [quantize(state, k) for k in range(3)]
    bound = max(p.bound() for p in planes)
    if bound >= EXACT_LIMIT:
        raise ValueError(f"weights too large for exact arithmetic ({bound:.3g})")
    out_dir.mkdir(parents=True, exist_ok=True)
    save(planes, out_dir / f"{name}.safetensors")
    return ck, planes, bound


def write_card(out_dir: Path, name: str, ck: dict, bound: float, features: list[int], metrics: dict) -> dict:
    """The card of the integer networks `save_integer` saved from checkpoint ck (their largest
    sum `bound`), with their feature counts and measured `metrics`, written beside them."""
    card = {
        "name": name,
        "config": {**ck["settings"], "features": features, "causal_neighbours": len(CAUSAL)},
        "sha256": sha256_file(out_dir / f"{name}.safetensors"),
        "training": ck["training"],
        "metrics": metrics,
        "largest_sum": bound,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card
