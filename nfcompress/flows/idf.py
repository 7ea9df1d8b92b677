"""The integer discrete flow: multi-scale couplings with conditional factor-out priors."""

__all__ = ["IDFConfig", "IDF"]

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from nfcompress.flows.bijections import AdditiveCoupling, Permutation, squeeze, unsqueeze
from nfcompress.flows.nets import ResNet
from nfcompress.flows.priors import ConditionalPrior, TopPrior, log2_prob, split_params


@dataclass
class IDFConfig:
    """Architecture of an IDF; saved in every model card so a model rebuilds from its card."""

    channels: int = 3
    levels: int = 5
    couplings: int = 2
    coupling_width: int = 48
    coupling_blocks: int = 1
    prior_width: int = 64
    prior_blocks: int = 2
    mixtures: int = 3
    # Channels factored out at each level below the top, as a chain of conditional steps.
    factor_steps: int = 2
    # At the top, the groups coded one after another; the last has no condition.
    top_groups: list[int] = field(default_factory=lambda: [64, 64, 32, 32])
    # A linear path beside every net (see ResNet).
    linear_skip: bool = True

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IDFConfig":
        """Rebuild from `to_dict` output, refusing unknown keys."""
        return cls(**d)

    @property
    def multiple(self) -> int:
        """Height and width of an input must be multiples of this."""
        return 2**self.levels


class _Level(nn.Module):
    """Squeeze, couplings with permutations between them, then a chain of factor-outs."""

    def __init__(self, cfg: IDFConfig, in_channels: int, groups: list[int], top: bool, seed: int):
        super().__init__()
        c = 4 * in_channels
        self.perms = nn.ModuleList()
        self.couplings = nn.ModuleList()
        for i in range(cfg.couplings):
            self.perms.append(Permutation(c, seed * 100 + i))
            split = c // 2
            net = ResNet(split, c - split, cfg.coupling_width, cfg.coupling_blocks, cfg.linear_skip)
            self.couplings.append(AdditiveCoupling(net, split))
        self.groups = groups
        self.top = top
        self.priors = nn.ModuleList()
        kept = c
        for i, g in enumerate(groups):
            kept -= g
            if top and i == len(groups) - 1:
                self.priors.append(TopPrior(g, cfg.mixtures))
            else:
                self.priors.append(
                    ConditionalPrior(kept, g, cfg.mixtures, cfg.prior_width, cfg.prior_blocks, cfg.linear_skip)
                )
        self.kept = kept

    def transform(self, x: Tensor) -> Tensor:
        h = squeeze(x)
        for perm, coupling in zip(self.perms, self.couplings):
            h = coupling(perm(h))
        return h

    def untransform(self, h: Tensor) -> Tensor:
        for perm, coupling in zip(reversed(self.perms), reversed(self.couplings)):
            h = perm.inverse(coupling.inverse(h))
        return unsqueeze(h)

    def prior(self, i: int, kept: Tensor) -> Tensor:
        p = self.priors[i]
        if isinstance(p, TopPrior):
            return p(kept.shape[0], kept.shape[2], kept.shape[3])
        return p(kept)


class IDF(nn.Module):
    """An integer discrete flow over 8-bit images (B, C, H, W) held as integer-valued floats.

    `forward(x)` gives the latents (a list, in forward order) and `inverse(latents)` gives x
    back exactly. Every latent group has a discretized logistic mixture prior, conditioned on
    the latents that stay, so `bits(x)` is the exact code length -log2 P(x) of each image.
    """

    def __init__(self, config: IDFConfig) -> None:
        super().__init__()
        self.config = config
        self.levels = nn.ModuleList()
        c = config.channels
        for lvl in range(config.levels):
            top = lvl == config.levels - 1
            if top:
                groups = list(config.top_groups)
                if sum(groups) != 4 * c:
                    raise ValueError(f"top_groups must sum to {4 * c}, got {sum(groups)}")
            else:
                out = 2 * c
                step = out // config.factor_steps
                groups = [step] * (config.factor_steps - 1) + [out - step * (config.factor_steps - 1)]
            level = _Level(config, c, groups, top, seed=lvl + 1)
            self.levels.append(level)
            c = level.kept

    def steps(self) -> list[tuple[int, int]]:
        """(level, group) of every latent group, in forward order."""
        return [(li, gi) for li, lvl in enumerate(self.levels) for gi in range(len(lvl.groups))]

    def forward_with_params(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Latents in forward order and the raw prior parameters of each."""
        latents, params = [], []
        h = x
        for level in self.levels:
            kept = level.transform(h)
            for i, g in enumerate(level.groups):
                z = kept[:, kept.shape[1] - g :]
                kept = kept[:, : kept.shape[1] - g].contiguous()
                latents.append(z.contiguous())
                params.append(level.prior(i, kept))
            h = kept
        return latents, params

    def forward(self, x: Tensor) -> list[Tensor]:
        """x -> latents (forward order), exact on integers."""
        latents = []
        h = x
        for level in self.levels:
            kept = level.transform(h)
            for g in level.groups:
                latents.append(kept[:, kept.shape[1] - g :].contiguous())
                kept = kept[:, : kept.shape[1] - g]
            h = kept
        return latents

    def inverse(self, latents: list[Tensor]) -> Tensor:
        """latents -> x, exact on integers."""
        it = iter(reversed(latents))
        return self.decode(lambda step, params, shape: next(it))

    def decode(self, draw: Callable[[int, Tensor, tuple[int, ...]], Tensor]) -> Tensor:
        """Rebuild x from the top down, asking `draw(step, raw_params, shape)` for each latent.

        `step` indexes the forward order; `draw` returns the latent whose prior has those raw
        parameters: the ANS decoder reads it from a stream, a sampler draws it at random.
        """
        steps = self.steps()
        b, h_, w_ = self._top_shape
        kept: Tensor | None = None
        for li in reversed(range(len(self.levels))):
            level = self.levels[li]
            if kept is None:
                kept = torch.zeros(b, 0, h_, w_, device=self._device(), dtype=torch.float32)
            for gi in reversed(range(len(level.groups))):
                step = steps.index((li, gi))
                params = level.prior(gi, kept.contiguous())
                z = draw(step, params, (b, level.groups[gi], kept.shape[2], kept.shape[3]))
                kept = torch.cat([kept, z.to(kept.dtype)], dim=1)
            kept = level.untransform(kept)
        return kept

    def set_shape(self, batch: int, height: int, width: int) -> None:
        """Tell `decode` the size of the images it is to rebuild."""
        m = self.config.multiple
        self._top_shape = (batch, height // m, width // m)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def bits(self, x: Tensor) -> Tensor:
        """Exact code length -log2 P(x) of each image, in bits, shape (B,)."""
        latents, params = self.forward_with_params(x)
        total = torch.zeros(x.shape[0], device=x.device)
        for z, raw in zip(latents, params):
            p = split_params(raw, self.config.mixtures)
            total = total - log2_prob(z, p).flatten(1).sum(1)
        return total
