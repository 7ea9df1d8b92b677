"""Discretized logistic mixtures over the unbounded integers, and the priors built from them."""

__all__ = ["MixtureParams", "split_params", "log2_prob", "ConditionalPrior", "ContextPrior", "TopPrior"]

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nfcompress.flows.nets import ResNet

MEAN_SCALE = 64.0
MEAN_OFFSET = 128.0
LOG_SCALE_OFFSET = 2.0
LOG_SCALE_MIN = -4.0


@dataclass
class MixtureParams:
    """Per-latent mixture parameters, each (B, M, C, H, W): log-weights, means, log-scales."""

    log_weights: Tensor
    means: Tensor
    log_scales: Tensor


def split_params(raw: Tensor, mixtures: int, normalise: bool = True) -> MixtureParams:
    """Turn a net's raw output (B, 3*M*C, H, W) into normalised mixture parameters.

    With `normalise` False the weights stay raw logits (portable coding normalises them itself,
    with an exp that every machine computes alike).
    """
    b, p, h, w = raw.shape
    r = raw.view(b, 3, mixtures, p // (3 * mixtures), h, w)
    return MixtureParams(
        log_weights=torch.log_softmax(r[:, 0], dim=1) if normalise else r[:, 0],
        means=r[:, 1] * MEAN_SCALE + MEAN_OFFSET,
        log_scales=torch.clamp(r[:, 2] + LOG_SCALE_OFFSET, min=LOG_SCALE_MIN),
    )


def log2_prob(z: Tensor, p: MixtureParams) -> Tensor:
    """log2 P(z) of integer z (B, C, H, W) under the discretized mixture, elementwise.

    P(z) = sum_k w_k [sigmoid((z + 1/2 - mu_k)/s_k) - sigmoid((z - 1/2 - mu_k)/s_k)], which sums
    to 1 over all integers; the difference of sigmoids is computed in log space, stably.
    """
    inv_s = torch.exp(-p.log_scales)
    centred = z.unsqueeze(1) - p.means
    upper = (centred + 0.5) * inv_s
    lower = (centred - 0.5) * inv_s
    log_mass = nn.functional.logsigmoid(upper) + nn.functional.logsigmoid(-lower) + torch.log(-torch.expm1(-inv_s))
    return torch.logsumexp(p.log_weights + log_mass, dim=1) / math.log(2.0)


def _spread_init(bias: Tensor, mixtures: int, channels: int, spread: float = 1.0) -> None:
    """Spread the mixture components' initial means so they do not train as one."""
    with torch.no_grad():
        b = bias.view(3, mixtures, channels)
        b.zero_()
        if mixtures > 1:
            b[1] = torch.linspace(-spread, spread, mixtures).view(mixtures, 1)


class ConditionalPrior(nn.Module):
    """A mixture for factored-out latents, its parameters predicted from the kept latents."""

    def __init__(self, kept: int, out: int, mixtures: int, width: int, blocks: int, skip: bool = True) -> None:
        super().__init__()
        self.mixtures = mixtures
        self.net = ResNet(kept, 3 * mixtures * out, width, blocks, skip)
        _spread_init(self.net.out.bias, mixtures, out)

    def forward(self, kept: Tensor) -> Tensor:
        """Raw parameters (B, 3*M*out, H, W) from the kept latents."""
        return self.net(kept.contiguous() * (1 / 128.0) - 1.0)


class ContextPrior(nn.Module):
    """A mixture for the second half of a checkerboard, given the kept latents and the first half.

    Its means are offsets from the average of each latent's coded (anchor) neighbours in the same
    channel: on flat and smooth ground, where neighbouring latents are equal, that is nearly exact
    from the first step, and the net learns what is left.
    """

    def __init__(self, kept: int, out: int, mixtures: int, width: int, blocks: int, skip: bool = True) -> None:
        super().__init__()
        self.mixtures = mixtures
        self.net = ResNet(kept + out + 1, 3 * mixtures * out, width, blocks, skip)
        _spread_init(self.net.out.bias, mixtures, out, spread=0.05)
        # How much of the neighbour average goes into each channel's means.
        self.gate = nn.Parameter(torch.ones(out))
        cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
        self.register_buffer("cross", cross.view(1, 1, 3, 3))

    def forward(self, kept: Tensor, z: Tensor, anchors: Tensor) -> Tensor:
        """Raw parameters (B, 3*M*out, H, W) from the kept latents and z at the anchors (bool (H, W))."""
        b, g, h, w = z.shape
        a = anchors.to(z.dtype).expand(b, 1, h, w)
        known = torch.where(anchors, z, 0.0)
        inp = torch.cat([kept * (1 / 128.0) - 1.0, torch.where(anchors, z * (1 / 128.0) - 1.0, 0.0), a], dim=1)
        raw = self.net(inp).view(b, 3, self.mixtures, g, h, w)
        total = nn.functional.conv2d(known, self.cross.expand(g, 1, 3, 3), padding=1, groups=g)
        count = nn.functional.conv2d(a[:1], self.cross, padding=1).clamp(min=1.0)
        centre = ((total / count - MEAN_OFFSET) / MEAN_SCALE).unsqueeze(1) * self.gate.view(1, 1, g, 1, 1)
        return torch.stack([raw[:, 0], raw[:, 1] + centre, raw[:, 2]], dim=1).view(b, -1, h, w)

    @torch.no_grad()
    def copy_from(self, prior: "ConditionalPrior | TopPrior") -> None:
        """Start as `prior` does: its net (or constants) on the kept latents, neighbours unused."""
        self.gate.zero_()
        for p in self.net.parameters():
            p.zero_()
        if isinstance(prior, TopPrior):
            self.net.out.bias.copy_(prior.raw)
            return
        src, dst = prior.net, self.net
        kept = src.inp.weight.shape[1]
        dst.inp.weight[:, :kept] = src.inp.weight
        if src.skip is not None and dst.skip is not None:
            dst.skip.weight[:, :kept] = src.skip.weight
        own = dict(dst.named_parameters())
        for name, p in src.named_parameters():
            if not name.startswith(("inp.weight", "skip.")):
                own[name].copy_(p)


class TopPrior(nn.Module):
    """A learned mixture per channel for the last latents, which have nothing to condition on."""

    def __init__(self, out: int, mixtures: int) -> None:
        super().__init__()
        self.mixtures = mixtures
        self.raw = nn.Parameter(torch.zeros(3 * mixtures * out))
        _spread_init(self.raw.data, mixtures, out)

    def forward(self, batch: int, height: int, width: int) -> Tensor:
        """Raw parameters (B, 3*M*out, H, W), the same at every position."""
        return self.raw.view(1, -1, 1, 1).expand(batch, -1, height, width).contiguous()
