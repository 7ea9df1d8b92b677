"""What the model sees: where the bits go in an image, and images drawn from the flow."""

__all__ = ["bit_map", "linear_bit_map", "heatmap_image", "sample", "grid"]

import numpy as np
import torch
from PIL import Image

from nfcompress.codec import Codec, colour_planes
from nfcompress.coders.flow.coder import as_rgb
from nfcompress.coders.flow.tiles import padded, plan_tiles
from nfcompress.flows import IDF, log2_prob, split_params
from nfcompress.flows.idf import anchors, place
from nfcompress.policy import encode_linear_or_jpeg

# Anchor colours of a dark-to-bright map (black, purple, red, orange, pale yellow).
_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)


@torch.no_grad()
def bit_map(codec: Codec, image: np.ndarray) -> np.ndarray:
    """Ideal bits spent on each pixel (H, W): every latent's bits spread over the pixels it covers."""
    rgb = as_rgb(colour_planes(image))
    flow = codec.flow
    model = flow.model
    m = model.config.multiple
    out = np.zeros(rgb.shape[:2])
    steps = model.steps()
    for tiles in plan_tiles(rgb.shape[0], rgb.shape[1], flow.tile, flow.batch, m):
        x = torch.from_numpy(padded(rgb, tiles, m)).to(flow.device).float()
        latents, params = model.forward_with_params(x)
        total = torch.zeros(x.shape[0], x.shape[2], x.shape[3], dtype=torch.float64)
        for (level, _, half), z, raw in zip(steps, latents, params):
            bits = -log2_prob(z, split_params(raw, model.config.mixtures)).double().sum(1, keepdim=True).cpu()
            f = 2 ** (level + 1)
            h, w = x.shape[2] // f, x.shape[3] // f
            if model.config.checkerboard:
                first = anchors(h, w, bits.device)
                spread = torch.zeros(x.shape[0], 1, h, w, dtype=torch.float64)
                bits = place(bits, first if half == 0 else ~first, spread)
            bits = bits[:, 0]
            total += bits.repeat_interleave(f, 1).repeat_interleave(f, 2) / (f * f)
        for t, tile in zip(tiles, total.numpy()):
            out[t.y : t.y + t.h, t.x : t.x + t.w] = tile[: t.h, : t.w]
    return out


def linear_bit_map(image: np.ndarray) -> np.ndarray:
    """`bit_map` of the per-image linear model: the ideal bits of each pixel (H, W) under the model
    fitted to the image (its side information and alpha aside)."""
    return encode_linear_or_jpeg(colour_planes(image), jpeg_too=False).pixel_bits


def colourise(values: np.ndarray, vmax: float) -> np.ndarray:
    """Values in [0, vmax] as RGB colours (H, W, 3) of a dark-to-bright map."""
    t = np.clip(values / max(vmax, 1e-9), 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(t.astype(int), len(_ANCHORS) - 2)
    f = (t - i)[..., None]
    return (_ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f).astype(np.uint8)


def heatmap_image(image: np.ndarray, bits: np.ndarray, overlay: bool = False) -> Image.Image:
    """The image beside (or under) its bits-per-pixel map, with a colour scale along the bottom."""
    rgb = as_rgb(colour_planes(image))
    vmax = float(np.percentile(bits, 99.5))
    heat = colourise(bits, vmax)
    panel = (0.4 * rgb + 0.6 * heat).astype(np.uint8) if overlay else np.concatenate([rgb, heat], axis=1)
    h, w = panel.shape[:2]
    bar_h = max(6, h // 20)
    scale = colourise(np.tile(np.linspace(0, vmax, w), (bar_h, 1)), vmax)
    canvas = Image.fromarray(np.concatenate([panel, scale], axis=0))
    if w >= 160:
        from PIL import ImageDraw

        d = ImageDraw.Draw(canvas)
        d.text((2, h), "0", fill="white")
        d.text((w - 90, h), f"{vmax:.1f} bits/pixel", fill="black")
    return canvas


@torch.no_grad()
def sample(model: IDF, n: int, size: int, seed: int, temperature: float = 1.0) -> np.ndarray:
    """n images (n, size, size, 3) drawn from the flow: latents from the priors, then the inverse."""
    g = torch.Generator().manual_seed(seed)
    model.set_shape(n, size, size)

    def draw(step: int, raw: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        p = split_params(raw.cpu(), model.config.mixtures)
        probs = p.log_weights.exp().movedim(1, -1).reshape(-1, p.log_weights.shape[1])
        k = torch.multinomial(probs, 1, generator=g).view(p.means.shape[0], 1, *p.means.shape[2:])
        mu = p.means.gather(1, k).squeeze(1)
        s = p.log_scales.gather(1, k).squeeze(1).exp() * temperature
        u = torch.rand(mu.shape, generator=g).clamp(1e-6, 1 - 1e-6)
        return torch.round(mu + s * (torch.log(u) - torch.log1p(-u))).to(raw.device)

    x = model.decode(draw)
    return x.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def grid(images: np.ndarray, pad: int = 2) -> Image.Image:
    """Images (n, h, w, 3) on a near-square grid."""
    n, h, w, _ = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = im
    return Image.fromarray(canvas)
