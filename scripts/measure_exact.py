"""The portable (exact integer) network beside the float one: ideal bpsp, and sameness of bits.

For each number of activation levels given (default: the shipped 1023), prints the ideal bpsp
of the model's exact copy on the val sets against the float model, and the share of prior
parameters that differ between channels-last and row-major convolutions and between 1 and 2
threads (the float network differs in most; the exact one must differ in none).

    python scripts/measure_exact.py .gpu-data/val.npz 511 1023 2047
"""

import sys

import numpy as np
import torch

from nfcompress.evaluate import ideal_bpsp
from nfcompress.flows.exact import LEVELS, exact_copy
from nfcompress.weights import load_model


def _params(model, x: torch.Tensor, channels_last: bool, threads: int) -> list[torch.Tensor]:
    torch.set_num_threads(threads)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with torch.no_grad():
        _, raw = model.to(memory_format=fmt).forward_with_params(x.contiguous(memory_format=fmt))
    torch.set_num_threads(2)
    return [r.contiguous() for r in raw]


def _differ(model, x: torch.Tensor) -> str:
    """Shares of parameters differing: layouts, then thread counts."""
    base = _params(model, x, True, 2)
    total = sum(p.numel() for p in base)
    shares = [
        100 * sum(int((a != b).sum()) for a, b in zip(base, other)) / total
        for other in (_params(model, x, False, 2), _params(model, x, True, 1))
    ]
    return f"differing (layouts / threads): {shares[0]:.1f}% / {shares[1]:.1f}%"


def main(npz: str, *levels: int) -> None:
    """Print the figures for each number of levels."""
    torch.set_num_threads(2)
    with np.load(npz) as f:
        sets = {k: f[k] for k in f.files}
    model, card = load_model("nfc-small")
    probe = torch.from_numpy(sets["native64"][-8:]).float()
    base = {k: ideal_bpsp(model, a) for k, a in sets.items()}
    print("float: " + ", ".join(f"{k} {v:.4f}" for k, v in base.items()) + "; " + _differ(model, probe))
    for n in levels or (LEVELS,):
        ex = exact_copy(model, card.exact["ranges"], n)
        figs = ", ".join(
            f"{k} {ideal_bpsp(ex, a):.4f} ({100 * (ideal_bpsp(ex, a) / base[k] - 1):+.2f}%)" for k, a in sets.items()
        )
        print(f"exact, {n} levels: {figs}; " + _differ(ex, probe))


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
