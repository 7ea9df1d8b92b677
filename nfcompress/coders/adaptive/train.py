"""The adaptive model's float network for training: the causal model's layers over its features
and `model.extras`, its loss, its start from the shipped causal weights, and its export."""

__all__ = ["AdaptiveNet", "Sample", "sample", "batch_loss", "start_from_causal", "shipped_net", "export"]

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nfcompress.coders.adaptive import model
from nfcompress.coders.causal import model as causal
from nfcompress.coders.causal.train import (
    PlaneNet,
    float_layers,
    mixture_bits,
    plane_outputs,
    save_integer,
    write_card,
)
from nfcompress.coders.linear import model as linear


class AdaptiveNet(nn.Module):
    """The three planes' networks (green, red, blue; grey images take green's)."""

    def __init__(self, hidden: int = 128, mixtures: int = 3) -> None:
        super().__init__()
        self.hidden, self.mixtures = hidden, mixtures
        self.planes = nn.ModuleList(PlaneNet(model.inputs(k), hidden, mixtures) for k in range(3))

    def settings(self) -> dict:
        """The architecture, as the card records it."""
        return {"hidden": self.hidden, "mixtures": self.mixtures}


@dataclass
class Sample:
    """A training image (H, W, C) uint8 with the linear model's prediction and scale code of every
    sub-pixel (C, H, W), channels in coding order."""

    kind: str
    image: np.ndarray
    predictions: np.ndarray  # int32, weight units
    scales: np.ndarray  # uint8


def sample(kind: str, image: np.ndarray) -> Sample:
    """A `Sample` of an image: the linear model fitted to it, as the encoder fits it."""
    fit = linear.fitted(image)
    h, w, c = image.shape
    preds = np.stack([fit.predictions(k).reshape(h, w) for k in range(c)]).astype(np.int32)
    scales = np.stack([fit.scale_codes(k).reshape(h, w) for k in range(c)]).astype(np.uint8)
    return Sample(kind, image, preds, scales)


def features(s: Sample, at: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per plane (features, fitted predictions, targets) of the sub-pixels at row-major indices
    `at` (every one where None), as the coder builds them."""
    x = np.ascontiguousarray(s.image[..., linear.coding_order(s.image.shape[2])].transpose(2, 0, 1)).astype(np.int64)
    c, h, w = x.shape
    at = np.arange(h * w) if at is None else np.asarray(at, np.int64)
    i, j = np.divmod(at, w)
    earlier = causal.pad_planes(x)
    res = model.residual_planes(x, [q.ravel() for q in s.predictions])
    out = []
    for k in range(c):
        p = s.predictions[k].ravel()[at].astype(np.int64)
        f = model.plane_features(causal.canvas(x, k), earlier[:k], k, i, j, w, p, s.scales[k].ravel()[at], h * w, res)
        out.append((f, p, x[k].ravel()[at]))
    return out


def batch_loss(
    net: AdaptiveNet,
    parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]],
    device: str = "cpu",
    half: bool = False,
) -> torch.Tensor:
    """Mean bits per sub-pixel of the sub-pixels in `parts` (each a `features` list, or a subset of
    its rows; `half`: `causal.train.plane_outputs`)."""
    total, count = 0.0, 0
    for k, plane in enumerate(net.planes):
        mine = [p[k] for p in parts if len(p) > k]
        if not mine:
            continue
        f, centre, x = (torch.from_numpy(np.concatenate([m[a] for m in mine])).to(device) for a in range(3))
        bits = mixture_bits(
            plane_outputs(plane, f.float(), half), centre.double().div(1 << causal.FRAC_BITS).float(), x.float()
        )
        total, count = total + bits.sum(), count + len(x)
    return total / count


@torch.no_grad()
def _load_padded(net: AdaptiveNet, planes: list[causal.PlaneWeights]) -> None:
    """Integer networks into `net`, zero first-layer weights for the inputs they did not read."""
    for layer, pw in zip(net.planes, planes):
        state = float_layers(pw)
        first = torch.zeros_like(layer.first.weight)
        first[:, : state["first.weight"].shape[1]] = state["first.weight"]
        layer.load_state_dict({**state, "first.weight": first})


@torch.no_grad()
def start_from_causal(net: AdaptiveNet, planes: list[causal.PlaneWeights]) -> None:
    """Start from the shipped causal network: its weights for the causal features, zero for the
    extras and residuals, and zero mean outputs (each component at the fitted prediction)."""
    _load_padded(net, planes)
    for layer in net.planes:
        layer.out.weight[: net.mixtures] = 0
        layer.out.bias[: net.mixtures] = 0


def shipped_net(version: int = model.NEWEST) -> AdaptiveNet:
    """The shipped adaptive network of format `version`'s files as a float network, to tune it
    (zero weights for the residuals where it did not read them)."""
    planes = model.load(version=version)
    net = AdaptiveNet(planes[0].first.shape[1])
    _load_padded(net, planes)
    return net


def export(checkpoint: Path, out_dir: Path, sets: dict[str, list[np.ndarray]], name: str) -> dict:
    """A float checkpoint (scripts/train_adaptive.py) as integer weights and their card, which
    records the bits per sub-pixel of real payloads on `sets` (kind: images), beside the linear
    model's on the same images."""
    ck, planes, bound = save_integer(checkpoint, out_dir, name)
    metrics: dict = {"parameters": sum(a.size for p in planes for a in vars(p).values()), "bpsp": {}}
    for kind, images in sets.items():
        if not images:
            continue
        ideal = payload = lin = subpixels = 0.0
        for im in images:
            fit = linear.fitted(im)
            data, bits, side, _ = model.encode(im, planes, fit)
            ideal, payload = ideal + float(bits.sum()) + side, payload + 8 * len(data)
            lin += 8 * len(linear.encode(im, fit=fit)[0])
            subpixels += im.size
        metrics["bpsp"][kind] = {
            "images": len(images),
            "nfcompress_ideal": round(ideal / subpixels, 4),
            "payload": round(payload / subpixels, 4),
            "linear_payload": round(lin / subpixels, 4),
        }
    return write_card(out_dir, name, ck, bound, [model.inputs(k) for k in range(3)], metrics)
