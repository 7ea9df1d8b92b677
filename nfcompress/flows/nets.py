"""Convolutional networks that parametrise couplings and priors."""

__all__ = ["ResNet"]

import torch
from torch import Tensor, nn


class _Block(nn.Module):
    """A residual block with a ReZero gate, so a fresh block is the identity."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.gate * self.conv2(torch.relu_(self.conv1(torch.relu(h))))


class ResNet(nn.Module):
    """conv3x3 -> residual blocks -> conv3x3; ReLU only, so outputs are cheap and exact to repeat.

    The last layer starts at zero: a fresh coupling is the identity and a fresh prior its bias.
    A linear 3x3 path from input to output (`skip`) learns linear prediction from neighbours
    quickly, the part of the job classical codecs do; the nonlinear path learns the rest.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, blocks: int, skip: bool = True) -> None:
        super().__init__()
        self.skip = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False) if skip else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_Block(width) for _ in range(blocks)])
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        # In place: the ReLUs act on fresh outputs that nothing else reads.
        y = self.out(torch.relu_(self.blocks(self.inp(x))))
        return y if self.skip is None else y + self.skip(x)
