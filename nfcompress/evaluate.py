"""Measured figures: a model's ideal bpsp on image sets, classical codecs beside it, speed."""

__all__ = ["ideal_bpsp", "classical_bpsp", "flow_timing"]

import time

import numpy as np
import torch

from nfcompress.classical import available, encode_classical
from nfcompress.flows import IDF


@torch.no_grad()
def ideal_bpsp(model: IDF, images: np.ndarray, batch: int = 64) -> float:
    """Total ideal bits over total sub-pixels of uint8 images (N, C, H, W)."""
    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).to(device).float()
        total += float(model.bits(x).double().sum())
    return total / images.size


def classical_bpsp(images: np.ndarray) -> dict[str, float]:
    """Each available classical codec's total file bits over total sub-pixels, round trips checked."""
    out = {}
    for name in available():
        total = 0
        for im in images:
            hwc = np.ascontiguousarray(im.transpose(1, 2, 0))
            data, dec = encode_classical(name, hwc)
            if not np.array_equal(dec(data), hwc):
                raise RuntimeError(f"{name} round trip failed")
            total += len(data)
        out[name] = 8 * total / images.size
    return out


@torch.no_grad()
def flow_timing(model: IDF, size: int = 512) -> dict[str, float]:
    """Seconds for the forward pass (priors included) and the inverse of one size x size RGB image."""
    x = torch.randint(0, 256, (1, model.config.channels, size, size)).float()
    device = next(model.parameters()).device
    x = x.to(device)
    model.bits(x)
    t = time.perf_counter()
    model.bits(x)
    fwd = time.perf_counter() - t
    latents = model(x)
    model.set_shape(1, size, size)
    t = time.perf_counter()
    model.inverse(latents)
    inv = time.perf_counter() - t
    return {"forward_s": round(fwd, 3), "inverse_s": round(inv, 3), "size": size}
