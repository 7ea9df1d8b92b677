"""Integer bijections: squeeze, fixed channel permutations and additive coupling."""

__all__ = ["round_ste", "squeeze", "unsqueeze", "Permutation", "AdditiveCoupling"]

import torch
from torch import Tensor, nn


def round_ste(x: Tensor) -> Tensor:
    """Round to the nearest integer, passing gradients straight through (IDF training)."""
    return x + (torch.round(x) - x).detach()


def squeeze(x: Tensor) -> Tensor:
    """Move each 2x2 block into channels: (B, C, H, W) -> (B, 4C, H/2, W/2), exact."""
    return nn.functional.pixel_unshuffle(x, 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Inverse of `squeeze`."""
    return nn.functional.pixel_shuffle(x, 2)


class Permutation(nn.Module):
    """A fixed channel permutation (a buffer, so it saves with the weights)."""

    def __init__(self, channels: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(channels, generator=g)
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("inv", torch.argsort(perm), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Permute channels."""
        return x[:, self.perm].contiguous()

    def inverse(self, z: Tensor) -> Tensor:
        """Undo the permutation."""
        return z[:, self.inv].contiguous()


class AdditiveCoupling(nn.Module):
    """b' = b + round(t(a)) on integer-valued tensors; log-det is zero.

    The translation net sees the first `split` channels scaled to about [-1, 1] and returns
    translations in pixel units for the rest.
    """

    def __init__(self, net: nn.Module, split: int) -> None:
        super().__init__()
        self.net = net
        self.split = split

    def _shift(self, a: Tensor) -> Tensor:
        return round_ste(self.net(a.contiguous() * (1 / 128.0) - 1.0))

    def forward(self, x: Tensor) -> Tensor:
        """x -> z, exact on integers."""
        a, b = x[:, : self.split], x[:, self.split :]
        return torch.cat([a, b + self._shift(a)], dim=1)

    def inverse(self, z: Tensor) -> Tensor:
        """z -> x, exact on integers."""
        a, b = z[:, : self.split], z[:, self.split :]
        return torch.cat([a, b - self._shift(a)], dim=1)
