"""A copy of a model whose every convolution is an exact integer sum: the same floats on any machine.

Each convolution's input is quantised to integers (a fixed per-layer range, measured once by
`calibrate` and kept in the model's card; a net's own input, latents scaled by 1/128, is
already an integer multiple of 1/128 and stays exact) and its weights to integers with a
power-of-two scale per output channel, chosen so that the sum of |weight| times the largest
input stays below 2**24. Every partial sum is then an integer that float32 holds exactly, so
any kernel, memory layout, thread count or vector unit gives the same result; the scaling, bias
and rounding around it are single IEEE operations, which every machine rounds alike. Only
kernels that add the products up directly keep that promise, so the sums run with NNPACK off
(its Winograd kernels are not exact) and oneDNN held to IEEE float32.
Measured on the shipped model (scripts/measure_exact.py): 1023 levels cost 0.07% on thumbnails
and 0.26% on native crops against the float network.
"""

__all__ = ["LEVELS", "MIN_TORCH", "ALGORITHM", "calibrate", "exact_copy", "check_ranges"]

import copy
import math

import numpy as np
import torch
from torch import Tensor, nn

LEVELS = 1023
# The oldest torch with every control the exact sums rely on (mkldnn.conv.fp32_precision came in
# 2.9); pyproject's floor must not be lower.
MIN_TORCH = (2, 9)
# Names this way of making the network exact; portable files' model hash includes it.
ALGORITHM = "exact-v1"
_EXACT = 1 << 24
_INPUT_NAMES = ("inp", "skip")  # convolutions that read a net's own input


def _convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def calibrate(model: nn.Module, batches: list[Tensor]) -> dict[str, list[float]]:
    """Each convolution's input range [min, max] over batches of images (N, 3, H, W), for the card."""
    ranges: dict[str, list[float]] = {}
    hooks = []
    for name, conv in _convs(model):

        def hook(mod, args, name=name):
            lo, hi = ranges.get(name, [0.0, 0.0])
            ranges[name] = [min(lo, float(args[0].min())), max(hi, float(args[0].max()))]

        hooks.append(conv.register_forward_pre_hook(hook))
    try:
        for x in batches:
            model.bits(x)
    finally:
        for h in hooks:
            h.remove()
    return ranges


class _IntegerConv:
    """An exact integer stand-in for one Conv2d's forward."""

    def __init__(self, conv: nn.Conv2d, name: str, lo: float, hi: float, levels: int) -> None:
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise ValueError(f"{name}: only plain convolutions have an exact form")
        if name.rsplit(".", 1)[-1] in _INPUT_NAMES:
            self.step = 1 / 128.0
            top = math.ceil(128 * max(abs(lo), abs(hi))) + 1
            self.lo, self.hi = -top, top
        else:
            reach = max(abs(lo), abs(hi), 1e-6)
            if lo < 0:
                top = levels // 2
                self.lo, self.hi = -top, top
            else:
                top = levels
                self.lo, self.hi = 0, top
            self.step = reach / top
        w = conv.weight.detach().cpu().double().numpy()
        fan_in = w[0].size
        budget = _EXACT - 1 - fan_in * top  # room for every weight's rounding
        # A power of two per output channel, so that dividing by it is exact. Every machine must
        # pick the same one: the sum of |w| is taken over integers (|w| in units of 2**-50,
        # truncated), which any order adds up exactly, and the exponent read by frexp.
        l1 = np.floor(np.abs(w).reshape(len(w), -1) * 2.0**50).astype(np.int64).sum(1)
        m, e = np.frexp(np.maximum(l1.astype(np.float64) * 2.0**-50 * top / budget, 1e-30))
        scale = np.ldexp(1.0, np.where(m == 0.5, e - 1, e))
        q = np.round(w / scale[:, None, None, None])
        if (np.abs(q).reshape(len(q), -1).sum(1) * top >= _EXACT).any():
            raise ArithmeticError(f"{name}: integer weights exceed the exact range")
        self.weight = torch.from_numpy(q).float().to(conv.weight.device)
        self._weight_cl: Tensor | None = None  # for channels-last inputs, made on first use
        self.out_scale = torch.from_numpy(scale * self.step).float().to(conv.weight.device).view(1, -1, 1, 1)
        self.inv_step = float(np.float32(1.0 / self.step))
        self.bias = None if conv.bias is None else conv.bias.detach().view(1, -1, 1, 1)
        self.stride, self.padding = conv.stride, conv.padding

    def __call__(self, x: Tensor) -> Tensor:
        q = (x * self.inv_step).round_().clamp_(self.lo, self.hi)
        # The weights follow the input's layout (any kernel gives the same exact sums).
        w = self.weight
        if q.is_contiguous(memory_format=torch.channels_last) and not q.is_contiguous():
            if self._weight_cl is None:
                self._weight_cl = w.contiguous(memory_format=torch.channels_last)
            w = self._weight_cl
        onednn = torch.backends.mkldnn.conv
        precision, onednn.fp32_precision = onednn.fp32_precision, "ieee"
        try:
            with torch.backends.nnpack.flags(enabled=False):
                y = nn.functional.conv2d(q, w, None, self.stride, self.padding)
        finally:
            onednn.fp32_precision = precision
        # Separate multiply and add (never a fused multiply-add, which not every machine rounds alike).
        y.mul_(self.out_scale)
        return y if self.bias is None else y.add_(self.bias)


def check_ranges(model: nn.Module, ranges: dict) -> None:
    """Raise ValueError unless `ranges` holds a [lo, hi] for exactly the model's convolutions."""
    if set(ranges) != {n for n, _ in _convs(model)}:
        raise ValueError("the calibration does not name the model's convolutions")
    for r in ranges.values():
        if not (isinstance(r, list) and len(r) == 2 and all(isinstance(v, float | int) for v in r)):
            raise ValueError("the calibration's ranges are not pairs of numbers")


def exact_copy(model: nn.Module, ranges: dict[str, list[float]], levels: int = LEVELS) -> nn.Module:
    """A deep copy of `model` whose convolutions are exact integer sums (see the module's notes)."""
    check_ranges(model, ranges)
    out = copy.deepcopy(model)
    for name, conv in _convs(out):
        conv.forward = _IntegerConv(conv, name, *ranges[name], levels)
        conv.weight = None  # the integer copy replaces it; no need to hold both
    return out
