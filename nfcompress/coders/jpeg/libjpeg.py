"""libjpeg's decoding, exactly: the integer "islow" IDCT, "fancy" (triangle) chroma upsampling and
its fixed-point YCbCr to RGB conversion, with the JPEG facts they need (plane shapes, libjpeg's
quality-scaled tables). The JPEG-history model (nfcompress.coders.jpeg) decodes with these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nfcompress.compiled import compiled

B = 8
SAMPLINGS = ((1, 1), (2, 2), (2, 1))  # chroma subsampling (horizontal, vertical): 4:4:4, 4:2:0, 4:2:2
QUALITIES = tuple(range(1, 101))

# islow's constants: FIX(x) = round(x * 2**13)
_C = {
    "0.298631336": 2446,
    "0.390180644": 3196,
    "0.541196100": 4433,
    "0.765366865": 6270,
    "0.899976223": 7373,
    "1.175875602": 9633,
    "1.501321110": 12299,
    "1.847759065": 15137,
    "1.961570560": 16069,
    "2.053119869": 16819,
    "2.562915447": 20995,
    "3.072711026": 25172,
}


@dataclass(frozen=True)
class JpegModel:
    """What the pixels' JPEG was: its chroma sampling, quantization tables (planes, 8, 8), each
    plane's quantized coefficients (block rows, block columns, 8, 8) and where the image's top
    left pixel lay in it (rows, columns; under 16 each: a crop of the JPEG's image)."""

    sampling: int
    quant: np.ndarray
    coefs: list[np.ndarray]
    offset: tuple[int, int] = (0, 0)


def _idct_sums(x: list) -> tuple:
    """One 1-D pass of islow before its descaling: eight integer linear combinations of x[0..7]."""
    z1 = (x[2] + x[6]) * _C["0.541196100"]
    tmp2 = z1 - x[6] * _C["1.847759065"]
    tmp3 = z1 + x[2] * _C["0.765366865"]
    tmp0 = (x[0] + x[4]) * (1 << 13)
    tmp1 = (x[0] - x[4]) * (1 << 13)
    t10, t13, t11, t12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    o0, o1, o2, o3 = x[7], x[5], x[3], x[1]
    z1, z2, z3, z4 = o0 + o3, o1 + o2, o0 + o2, o1 + o3
    z5 = (z3 + z4) * _C["1.175875602"]
    z1 = z1 * -_C["0.899976223"]
    z2 = z2 * -_C["2.562915447"]
    z3 = z3 * -_C["1.961570560"] + z5
    z4 = z4 * -_C["0.390180644"] + z5
    o0 = o0 * _C["0.298631336"] + z1 + z3
    o1 = o1 * _C["2.053119869"] + z2 + z4
    o2 = o2 * _C["3.072711026"] + z2 + z3
    o3 = o3 * _C["1.501321110"] + z1 + z4
    return (t10 + o3, t11 + o2, t12 + o1, t13 + o0, t13 - o0, t12 - o1, t11 - o2, t10 - o3)


# islow's passes are exact integer linear maps before each descaling: as a matrix, whose
# products stay under 2**53 (|coefficient x step| < 2**24), so float64 computes them exactly.
_ISLOW = np.array([_idct_sums(list(np.eye(B, dtype=np.int64)[j])) for j in range(B)], np.float64).T


def idct(dequantized: np.ndarray) -> np.ndarray:
    """libjpeg's islow IDCT of integer blocks (..., 8, 8) [vertical, horizontal frequency]: int32 samples 0..255."""
    ws = np.matmul(_ISLOW, dequantized.astype(np.float64))
    ws += 1 << 10
    ws *= 2.0**-11
    np.floor(ws, out=ws)
    out = np.matmul(ws, _ISLOW.T)
    out += (1 << 17) + (128 << 18)
    out *= 2.0**-18
    np.floor(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.int32)


@compiled
def idct_block(k: np.ndarray, q: np.ndarray, out: np.ndarray) -> None:
    """`idct` of one block of coefficients k (8, 8) with steps q, into out: the same exact sums,
    for compiled loops."""
    ws, c = np.empty((B, B)), np.empty((B, B))
    for v in range(B):
        for u in range(B):
            c[v, u] = float(k[v, u] * q[v, u])
    for y in range(B):
        for u in range(B):
            a = 0.0
            for v in range(B):
                a += _ISLOW[y, v] * c[v, u]
            ws[y, u] = np.floor((a + (1 << 10)) * 2.0**-11)
    for y in range(B):
        for x in range(B):
            a = 0.0
            for u in range(B):
                a += ws[y, u] * _ISLOW[x, u]
            out[y, x] = np.int64(min(max(np.floor((a + (1 << 17) + (128 << 18)) * 2.0**-18), 0.0), 255.0))


def _fix(x: float) -> int:
    return int(x * 65536 + 0.5)


def ycc_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """libjpeg's fixed-point YCbCr to RGB of integer sample planes: (H, W, 3) 0..255."""
    cb, cr = cb - 128, cr - 128
    r = y + ((_fix(1.402) * cr + 32768) >> 16)
    g = y + ((-_fix(0.34414) * cb + 32768 - _fix(0.71414) * cr) >> 16)
    b = y + ((_fix(1.772) * cb + 32768) >> 16)
    return np.clip(np.stack([r, g, b], -1), 0, 255)


_R_CR, _G_CB, _G_CR, _B_CB = _fix(1.402), _fix(0.34414), _fix(0.71414), _fix(1.772)


@compiled
def rgb_one(y: int, cb: int, cr: int) -> tuple[int, int, int]:
    """`ycc_to_rgb` of one sample's Y, Cb and Cr, for compiled loops."""
    cb, cr = cb - 128, cr - 128
    r = y + ((_R_CR * cr + 32768) >> 16)
    g = y + ((-_G_CB * cb + 32768 - _G_CR * cr) >> 16)
    b = y + ((_B_CB * cb + 32768) >> 16)
    return min(max(r, 0), 255), min(max(g, 0), 255), min(max(b, 0), 255)


def shifted(a: np.ndarray, axis: int, step: int) -> np.ndarray:
    """`a` moved one sample along `axis` (step -1: each sample's predecessor), the edge repeated."""
    n = a.shape[axis]
    idx = np.clip(np.arange(n) + step, 0, n - 1)
    return np.take(a, idx, axis=axis)


def upsample(c: np.ndarray, sampling: int) -> np.ndarray:
    """libjpeg's fancy upsampling of a chroma plane: h2v1 or h2v2 triangle filters."""
    hs, vs = SAMPLINGS[sampling]
    if hs == 1:
        return c
    h, w = c.shape
    out = np.empty((vs * h, 2 * w), c.dtype)
    if vs == 1:
        out[:, 0::2] = (3 * c + shifted(c, 1, -1) + 1) >> 2
        out[:, 1::2] = (3 * c + shifted(c, 1, 1) + 2) >> 2
        out[:, 0], out[:, -1] = c[:, 0], c[:, -1]
        return out
    for k, step in ((0, -1), (1, 1)):
        s = 3 * c + shifted(c, 0, step)
        o = out[k::2]
        o[:, 0::2] = (3 * s + shifted(s, 1, -1) + 8) >> 4
        o[:, 1::2] = (3 * s + shifted(s, 1, 1) + 7) >> 4
        o[:, 0] = (4 * s[:, 0] + 8) >> 4
        o[:, -1] = (4 * s[:, -1] + 7) >> 4
    return out


@compiled
def upsampled_at(c: np.ndarray, y: int, x: int, hs: int, vs: int) -> int:
    """`upsample`'s sample (y, x) of a chroma plane c subsampled by hs (2) and vs (1 or 2), for
    compiled loops: the same integers, the plane's edges repeated."""
    rows, cols = c.shape
    r, j, left = y // vs, x // 2, x % 2 == 0
    side = max(j - 1, 0) if left else min(j + 1, cols - 1)
    if vs == 1:
        return (3 * c[r, j] + c[r, side] + (1 if left else 2)) >> 2
    near = max(r - 1, 0) if y % 2 == 0 else min(r + 1, rows - 1)
    here, there = 3 * c[r, j] + c[near, j], 3 * c[r, side] + c[near, side]
    return (3 * here + there + (8 if left else 7)) >> 4


def plane_shapes(h: int, w: int, channels: int, sampling: int) -> list[tuple[int, int, int, int]]:
    """Each plane's sample height and width and its block rows and columns (whole MCUs)."""
    hs, vs = SAMPLINGS[sampling] if channels == 3 else (1, 1)
    mh, mw = -(-h // (B * vs)), -(-w // (B * hs))
    out = [(h, w, mh * vs, mw * hs)]
    if channels == 3:
        out += [(-(-h // vs), -(-w // hs), mh, mw)] * 2
    return out


def to_blocks(p: np.ndarray, rows: int, cols: int, fill: bool | None = None) -> np.ndarray:
    """A plane as (rows, cols, 8, 8) blocks, its edge samples repeated to fill them (or `fill`)."""
    h, w = p.shape
    grow = ((0, rows * B - h), (0, cols * B - w))
    p = np.pad(p, grow, mode="edge") if fill is None else np.pad(p, grow, constant_values=fill)
    return p.reshape(rows, B, cols, B).swapaxes(1, 2)


def from_blocks(b: np.ndarray, h: int, w: int) -> np.ndarray:
    rows, cols = b.shape[:2]
    return b.swapaxes(1, 2).reshape(rows * B, cols * B)[:h, :w]


def samples(model: JpegModel, h: int, w: int) -> list[np.ndarray]:
    """Each plane's decoded samples (int32) at its own resolution, for an H x W image: the JPEG's
    image, the offset's rows and columns before it included."""
    oy, ox = model.offset
    shapes = plane_shapes(h + oy, w + ox, len(model.coefs), model.sampling)
    return [from_blocks(idct(k * q), s[0], s[1]) for k, q, s in zip(model.coefs, model.quant, shapes, strict=True)]


def reconstruct(model: JpegModel, h: int, w: int) -> np.ndarray:
    """The (H, W, C) uint8 pixels a libjpeg decoder makes of the model's coefficients."""
    planes = samples(model, h, w)
    oy, ox = model.offset
    if len(planes) == 1:
        return planes[0][oy:, ox:, None].astype(np.uint8)
    cb, cr = (upsample(p, model.sampling)[: h + oy, : w + ox] for p in planes[1:])
    return ycc_to_rgb(planes[0][oy:, ox:], cb[oy:, ox:], cr[oy:, ox:]).astype(np.uint8)


# The example tables of the JPEG standard (Annex K), which libjpeg scales by its quality setting
_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56]
_LUMA += [14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92]
_LUMA += [49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_CHROMA = [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38
STANDARD = np.array([_LUMA, _CHROMA], np.int64).reshape(2, B, B)


def standard_quant(quality: int, kind: int) -> np.ndarray:
    """libjpeg's table for a quality setting 1..100 (kind 0 luma, 1 chroma)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((STANDARD[kind] * scale + 50) // 100, 1, 255)
