"""The integer discrete flow: multi-scale couplings with conditional factor-out priors."""

__all__ = ["IDFConfig", "IDF", "anchors", "take", "place"]

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from nfcompress.flows.bijections import AdditiveCoupling, Permutation, squeeze, unsqueeze
from nfcompress.flows.nets import ResNet
from nfcompress.flows.priors import ConditionalPrior, ContextPrior, TopPrior, log2_prob, split_params


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
    # Code each latent group in two checkerboard halves, the second given the first.
    checkerboard: bool = True

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IDFConfig":
        """Rebuild from `to_dict` output, refusing unknown keys."""
        # Cards written before the checkerboard existed describe models without it.
        return cls(**{"checkerboard": False, **d})

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
        self.contexts = nn.ModuleList()
        kept = c
        for i, g in enumerate(groups):
            kept -= g
            net = (kept, g, cfg.mixtures, cfg.prior_width, cfg.prior_blocks, cfg.linear_skip)
            self.priors.append(TopPrior(g, cfg.mixtures) if top and i == len(groups) - 1 else ConditionalPrior(*net))
            if cfg.checkerboard:
                self.contexts.append(ContextPrior(*net))
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


def anchors(height: int, width: int, device: torch.device) -> Tensor:
    """The checkerboard's first half, coded before the rest: bool (H, W), True where (i + j) is even."""
    i = torch.arange(height, device=device).view(-1, 1)
    j = torch.arange(width, device=device).view(1, -1)
    return (i + j) % 2 == 0


def take(t: Tensor, where: Tensor) -> Tensor:
    """The positions of t (B, C, H, W) where `where` (H, W) holds, in raster order: (B, C, n, 1)."""
    return t[:, :, where].unsqueeze(-1)


def place(values: Tensor, where: Tensor, out: Tensor) -> Tensor:
    """Write values (B, C, n, 1) from `take` back into out (B, C, H, W) at `where`, in place."""
    out[:, :, where] = values.squeeze(-1).to(out.dtype)
    return out


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

    def steps(self) -> list[tuple[int, int, int]]:
        """(level, group, half) of every coded latent tensor, in forward order.

        With a checkerboard each group codes as two tensors, its second half (1) before its
        anchors (0) in forward order, so that decoding, which runs backwards, meets anchors first.
        """
        halves = [1, 0] if self.config.checkerboard else [0]
        return [(li, gi, h) for li, lvl in enumerate(self.levels) for gi in range(len(lvl.groups)) for h in halves]

    def _groups(self, x: Tensor):
        """Walk the levels forward, yielding (level, group index, latent group, the kept latents)."""
        h = x
        for level in self.levels:
            kept = level.transform(h)
            for i, g in enumerate(level.groups):
                z = kept[:, kept.shape[1] - g :].contiguous()
                kept = kept[:, : kept.shape[1] - g].contiguous()
                yield level, i, z, kept
            h = kept

    def forward_with_params(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Coded latent tensors in forward order and the raw prior parameters of each."""
        latents, params = [], []
        for level, i, z, kept in self._groups(x):
            first = level.prior(i, kept)
            if self.config.checkerboard:
                m = anchors(z.shape[2], z.shape[3], z.device)
                second = level.contexts[i](kept, z, m)
                latents += [take(z, ~m), take(z, m)]
                params += [take(second, ~m), take(first, m)]
            else:
                latents.append(z)
                params.append(first)
        return latents, params

    def forward(self, x: Tensor) -> list[Tensor]:
        """x -> coded latent tensors (forward order), exact on integers."""
        latents = []
        for _, _, z, _ in self._groups(x):
            if self.config.checkerboard:
                m = anchors(z.shape[2], z.shape[3], z.device)
                latents += [take(z, ~m), take(z, m)]
            else:
                latents.append(z)
        return latents

    def inverse(self, latents: list[Tensor]) -> Tensor:
        """latents -> x, exact on integers."""
        return self.decode(lambda step, params, shape: latents[step])

    def decode(self, draw: Callable[[int, Tensor, tuple[int, ...]], Tensor]) -> Tensor:
        """Rebuild x from the top down, asking `draw(step, raw_params, shape)` for each latent tensor.

        `step` indexes `steps()`; `draw` returns the latents whose prior has those raw
        parameters: the ANS decoder reads them from a stream, a sampler draws them at random.
        A checkerboard half with no positions (on a 1x1 grid) is not asked for.
        """
        step = len(self.steps())
        b, h_, w_ = self._top_shape
        kept = torch.zeros(b, 0, h_, w_, device=self._device(), dtype=torch.float32)
        for li in reversed(range(len(self.levels))):
            level = self.levels[li]
            for gi in reversed(range(len(level.groups))):
                g, h, w = level.groups[gi], kept.shape[2], kept.shape[3]
                first = level.prior(gi, kept.contiguous())
                if self.config.checkerboard:
                    m = anchors(h, w, kept.device)
                    z = kept.new_zeros(b, g, h, w)
                    step -= 1
                    place(draw(step, take(first, m), (b, g, int(m.sum()), 1)), m, z)
                    step -= 1
                    if not m.all():
                        second = level.contexts[gi](kept.contiguous(), z, m)
                        place(draw(step, take(second, ~m), (b, g, int((~m).sum()), 1)), ~m, z)
                else:
                    step -= 1
                    z = draw(step, first, (b, g, h, w))
                kept = torch.cat([kept, z.to(kept.dtype)], dim=1)
            kept = level.untransform(kept)
        return kept

    def set_shape(self, batch: int, height: int, width: int) -> None:
        """Tell `decode` the size of the images it is to rebuild."""
        m = self.config.multiple
        self._top_shape = (batch, height // m, width // m)

    def seed_contexts(self) -> None:
        """Start every checkerboard context as a copy of its group's prior, so that a model grown
        from one without a checkerboard begins exactly where that one stood."""
        for level in self.levels:
            for prior, context in zip(level.priors, level.contexts):
                context.copy_from(prior)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def bits(self, x: Tensor) -> Tensor:
        """Exact code length -log2 P(x) of each image, in bits, shape (B,)."""
        total = torch.zeros(x.shape[0], device=x.device)
        for level, i, z, kept in self._groups(x):
            raw = level.prior(i, kept)
            if self.config.checkerboard:
                m = anchors(z.shape[2], z.shape[3], z.device)
                raw = torch.where(m, raw, level.contexts[i](kept, z, m))
            total = total - log2_prob(z, split_params(raw, self.config.mixtures)).flatten(1).sum(1)
        return total
