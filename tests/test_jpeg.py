"""The JPEG-history model: libjpeg's exact decoding, the coefficients found again, round trips."""

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import code_apart, photo_like
from PIL import Image

from nfcompress import decode
from nfcompress.codec import Codec, encode_linear
from nfcompress.coders.jpeg import libjpeg
from nfcompress.coders.jpeg import model as jpeg
from nfcompress.coders.linear import model as linear
from nfcompress.container import unpack
from nfcompress.errors import FormatError, NfcError

PIZZA = Path(__file__).parents[1] / "examples" / "pizza-128.png"
# Pillow's names for the samplings, in jpeg.SAMPLINGS order
PILLOW_SUBSAMPLING = (0, 2, 1)


def _once_a_jpeg(img: np.ndarray, quality: int = 75, sampling: int = 0) -> tuple[np.ndarray, Image.Image]:
    """The pixels Pillow (libjpeg-turbo) decodes from a JPEG it made of img, and that JPEG."""
    buf = io.BytesIO()
    mode = "L" if img.ndim == 2 else "RGB"
    Image.fromarray(img, mode).save(buf, "JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[sampling])
    im = Image.open(io.BytesIO(buf.getvalue()))
    return np.asarray(im.convert(mode)), im


def _pizza(h: int = 128, w: int = 128) -> np.ndarray:
    return np.asarray(Image.open(PIZZA).convert("RGB"))[:h, :w]


@pytest.mark.parametrize("sampling", [0, 1, 2])
def test_the_decoder_is_libjpegs_and_the_coefficients_come_back(sampling):
    pixels, im = _once_a_jpeg(_pizza(120, 104), 80, sampling)  # not whole MCUs: the edges repeat
    model = jpeg.fit(pixels, sampling)
    assert np.array_equal(model.quant[0], np.array(im.quantization[0]).reshape(8, 8))
    assert np.array_equal(model.quant[1], np.array(im.quantization[1]).reshape(8, 8))
    again = jpeg.reconstruct(model, *pixels.shape[:2])
    assert np.mean(again == pixels) > 0.9


@pytest.mark.parametrize("sampling", [0, 1, 2])
def test_the_sampling_is_chosen_by_what_codes_smallest(sampling):
    pixels, _ = _once_a_jpeg(_pizza(), 70, sampling)
    assert jpeg.choose(pixels)[0].sampling == sampling


@pytest.mark.parametrize("quality", [50, 90])
def test_a_jpeg_made_image_codes_far_smaller_than_by_the_linear_model_and_exactly(quality, monkeypatch):
    pixels, _ = _once_a_jpeg(_pizza(), quality, 1)
    res = encode_linear(pixels)
    assert res.coder == "jpeg" and unpack(res.data)[0].kind == "jpeg"
    assert np.array_equal(decode(res.data), pixels)
    monkeypatch.setattr(jpeg, "choose", lambda rgb, progress=None: None)
    alone = encode_linear(pixels)
    assert alone.coder == "linear" and unpack(alone.data)[0].kind == "linear"
    assert len(res.data) < 0.8 * len(alone.data)


@pytest.mark.parametrize("sampling", [0, 1, 2])
@pytest.mark.parametrize("shape", [(16, 16), (23, 41), (64, 9)])
def test_any_image_round_trips_through_the_model_even_one_no_jpeg_made(sampling, shape):
    for img in (photo_like(*shape, 3, seed=sum(shape)), np.full((*shape, 3), 255, np.uint8)):
        for offset in [(0, 0), (5, 11)]:
            model = jpeg._polished(img, jpeg.fit(img, sampling, offset=offset))
            data, bits = jpeg.encode(img, model)
            assert bits > 0 and np.array_equal(jpeg.decode(data, *shape, 3), img)
    grey = photo_like(*shape, 1, seed=sum(shape))
    data, _ = jpeg.encode(grey, jpeg._polished(grey, jpeg.fit(grey, 0, offset=(3, 2))))
    assert np.array_equal(jpeg.decode(data, *shape, 1), grey)


def test_grey_and_alpha_images():
    grey, _ = _once_a_jpeg(_pizza()[..., 1], 75)
    data, _ = jpeg.encode(grey[..., None], jpeg.choose(grey[..., None])[0])
    assert np.array_equal(jpeg.decode(data, 128, 128, 1)[..., 0], grey)
    res = encode_linear(grey)
    assert res.coder == "jpeg" and np.array_equal(decode(res.data), grey)
    colour, _ = _once_a_jpeg(_pizza(), 75, 1)
    rgba = np.concatenate([colour, np.arange(128 * 128, dtype=np.uint8).reshape(128, 128, 1)], 2)
    res = encode_linear(rgba)
    assert res.coder == "jpeg" and np.array_equal(decode(res.data), rgba)


@pytest.mark.parametrize("sampling", [0, 1, 2])
def test_a_crop_of_a_jpeg_anywhere_on_its_grid_is_found_with_its_offset(sampling):
    pixels, _ = _once_a_jpeg(np.tile(_pizza(), (2, 2, 1)), 75, sampling)
    for y, x in [(3, 5), (11, 2)]:
        crop = pixels[y:, x:][:200, :190]
        model = jpeg.choose(crop)[0]
        hs, vs = jpeg.SAMPLINGS[sampling]
        mcu = (8 * vs, 8 * hs)  # offsets are the same modulo the MCU
        assert (model.offset[0] % mcu[0], model.offset[1] % mcu[1]) == (y % mcu[0], x % mcu[1])
        res = encode_linear(crop)
        assert res.coder == "jpeg" and np.array_equal(decode(res.data), crop)


def test_no_jpeg_is_left_to_the_linear_model():
    img = photo_like(80, 72, 3, seed=3)
    assert jpeg.choose(img) is None and encode_linear(img).coder == "linear"


def test_a_corrupted_or_short_payload_fails_loudly():
    pixels, _ = _once_a_jpeg(_pizza(), 60, 1)
    data = bytearray(encode_linear(pixels).data)
    data[-40] ^= 0x5A
    with pytest.raises(NfcError):
        decode(bytes(data))
    with pytest.raises(FormatError, match="cannot hold"):
        jpeg.decode(b"\0" * 64, 1 << 14, 1 << 14, 3)


def test_encode_and_decode_in_separate_processes_with_other_thread_counts(tmp_path):
    pixels, _ = _once_a_jpeg(_pizza(), 85, 0)
    src = tmp_path / "once-a-jpeg.png"
    Image.fromarray(pixels).save(src)
    data, back = code_apart(src, tmp_path)
    assert unpack(data)[0].kind == "jpeg"
    assert np.array_equal(back, pixels)


def test_where_the_crop_shows_the_jpeg_model_far_ahead_the_linear_model_codes_only_the_crop(monkeypatch):
    pixels, _ = _once_a_jpeg(np.tile(_pizza(), (3, 3, 1)), 50, 1)
    shapes, real = [], linear.encode
    monkeypatch.setattr(linear, "encode", lambda rgb, *a, **k: shapes.append(rgb.shape[:2]) or real(rgb, *a, **k))
    calls = []
    res = Codec.load().encode(pixels, coder="linear", progress=lambda done, total: calls.append((done, total)))
    assert res.coder == "jpeg" and shapes == [(jpeg.CROP, jpeg.CROP)]
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]  # a lone large image shows progress
    assert np.array_equal(decode(res.data), pixels)


def test_islow_as_float64_matrices_is_the_integer_butterfly_exactly():
    def butterfly(d: np.ndarray) -> np.ndarray:  # libjpeg's two passes in integers, descaled in each
        cols = np.stack(libjpeg._idct_sums([d[..., k, :] for k in range(8)]), -2)
        cols = (cols + (1 << 10)) >> 11
        rows = np.stack(libjpeg._idct_sums([cols[..., k] for k in range(8)]), -1)
        return np.clip(((rows + (1 << 17)) >> 18) + 128, 0, 255)

    r = np.random.default_rng(5)
    for top in (1, 40, 2000, (1 << 15) * 255):  # up to the largest coefficient times step
        d = r.integers(-top, top + 1, (4000, 8, 8)) * r.integers(0, 2, (4000, 8, 8))
        assert np.array_equal(libjpeg.idct(d), butterfly(d))


def test_unsettled_steps_are_filled_from_the_largest_settled_at_lower_frequencies():
    q = np.zeros((8, 8), np.int64)
    q[0, :3] = [4, 3, 6]
    q[1, 0], q[1, 1], q[2, 2] = 5, 255, 0
    filled = jpeg._filled(q)
    assert filled[0, 3] == 6 and filled[1, 1] == 255 and filled[2, 2] == 6 and filled[3, 0] == 5
    assert jpeg._filled(np.zeros((8, 8), np.int64)).max() == 1  # nothing settled: steps of 1


def test_a_jpeg_with_tables_of_its_own_is_found_and_codes_small():
    r = np.random.default_rng(7)
    own = [np.clip(3 + np.add.outer(np.arange(8), np.arange(8)) * 2 + r.integers(0, 3, (8, 8)), 1, 255)]
    own.append(np.clip(own[0] + 4, 1, 255))
    buf = io.BytesIO()
    big = np.tile(_pizza(), (2, 2, 1))
    Image.fromarray(big).save(buf, "JPEG", qtables=[t.ravel().tolist() for t in own], subsampling=0)
    pixels = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    res = encode_linear(pixels)
    assert res.coder == "jpeg" and np.array_equal(decode(res.data), pixels)
    assert len(res.data) < 0.5 * len(linear.encode(pixels)[0])


@pytest.mark.parametrize("first, second", [(50, 75), (40, 80)])
def test_a_jpeg_saved_again_at_a_higher_quality_is_coded_on_the_second_ones_tables(first, second):
    clean = np.asarray(Image.open(PIZZA).convert("RGB").resize((96, 96), Image.Resampling.BOX))
    once, _ = _once_a_jpeg(clean, first, 1)
    buf = io.BytesIO()
    Image.fromarray(once).save(buf, "JPEG", quality=second, subsampling=PILLOW_SUBSAMPLING[1])
    pixels = np.asarray(Image.open(buf).convert("RGB"))
    model = jpeg.choose(pixels)[0]
    assert all(np.array_equal(q, libjpeg.standard_quant(second, min(k, 1))) for k, q in enumerate(model.quant))
    res = encode_linear(pixels)
    assert res.coder == "jpeg" and np.array_equal(decode(res.data), pixels)
    assert len(res.data) < len(buf.getvalue())


def test_the_grid_of_a_jpeg_saved_again_is_found_by_its_dividing_tables():
    """Its steps, estimated at each offset, show no libjpeg table: the offsets are weighed with
    the tables that divide them (a crop of at least DIVIDED_FROM pixels)."""
    once, _ = _once_a_jpeg(np.tile(_pizza(), (2, 2, 1)), 40, 1)
    buf = io.BytesIO()
    Image.fromarray(once).save(buf, "JPEG", quality=80, subsampling=PILLOW_SUBSAMPLING[1])
    pixels = np.asarray(Image.open(buf).convert("RGB"))
    assert pixels.shape[0] * pixels.shape[1] >= jpeg.DIVIDED_FROM
    model = jpeg.choose(pixels)[0]
    assert model.offset == (0, 0) and np.array_equal(model.quant[0], libjpeg.standard_quant(80, 0))
    assert len(encode_linear(pixels).data) < len(buf.getvalue())


def test_the_encoders_steps_of_a_plane_are_the_decoders_one_wavefront_and_frequency_at_a_time():
    # The decoder reads a plane's DCs one wavefront at a time and each AC frequency from the lower
    # ones it has decoded; the encoder finds every context at once, which must give the same steps.
    from nfcompress.coding.primitives import diagonals

    r = np.random.default_rng(5)
    for rows, cols in [(1, 1), (3, 5), (8, 8), (2, 9)]:
        k = r.integers(-60, 60, (rows, cols, 8, 8)) * (r.random((rows, cols, 8, 8)) < 0.4)
        for kind in (0, 1):
            got = jpeg._Steps()
            jpeg._plane_steps(got, k, kind)
            want, dc = jpeg._Steps(), k[:, :, 0, 0]
            for i, j in diagonals(rows, cols):
                med, act = jpeg._dc_prediction(dc, i, j)
                want.add(dc[i, j] - med, jpeg.AC_CONTEXTS + kind * jpeg.BUCKETS + jpeg._bucket(act))
            for f in range(1, 64):
                v, u = jpeg._UV[f]
                want.add(k[:, :, v, u], jpeg._ac_context(k, f, kind))
            assert len(got.cats) == len(want.cats) == rows + cols - 1 + 63
            for a, b in zip(got.cats, want.cats):
                assert all(np.array_equal(x, y) for x, y in zip(a, b))


def _largest_step_numpy(x: np.ndarray) -> int:
    """`_largest_step` as numpy weighs every candidate step at once."""
    cand = np.arange(2, min(255, int(2 * x.max()) + 1) + 1)[:, None].astype(np.float64)
    big = x >= cand / 2
    on = np.abs(x - cand * np.round(x / cand)) <= np.minimum(1.0, cand / 4)
    n = big.sum(1)
    lost = ((x > np.maximum(2.0, cand / 6)) & ~big).sum(1)
    ok = np.flatnonzero((n > 0) & ((on & big).sum(1) >= jpeg.FIT * n) & (lost <= (1 - jpeg.FIT) * n))
    return int(cand[ok[-1], 0]) if len(ok) else 0


def test_the_compiled_step_search_finds_numpys_step():
    r = np.random.default_rng(1)
    found = set()
    for _ in range(400):
        step, n = r.integers(2, 80), r.integers(1, 300)
        x = np.abs(step * r.integers(-20, 20, n) + r.normal(0, r.choice([0.1, 0.5, 2, 8]), n))
        x = x[x > 1.0]
        if len(x):
            found.add(jpeg._largest_step(x))
            assert jpeg._largest_step(x) == _largest_step_numpy(x)
    assert 0 in found and len(found) > 20  # steps found, and none where the noise hides them


def test_each_block_is_solved_as_if_alone():
    # A block's coefficients depend on its own targets only, whichever blocks beside it are met
    # sooner (the search once moved blocks by the samples of others that had finished); a block
    # across the plane's edge knows how far in it lies.
    pixels, _ = _once_a_jpeg(_pizza(60, 52), 95, 0)
    t = jpeg._targets(pixels, 0, (0, 0))
    quant = jpeg._complete(jpeg._raw_quant(t), filled=False)
    for target, dct, q, free, (h, w) in zip(t.targets, t.dct, quant, t.free, t.sizes):
        together = jpeg._solve(target, dct, q, free, (h, w))
        for i, j in np.ndindex(target.shape[:2]):
            one = (a[i : i + 1, j : j + 1] for a in (target, dct))
            size = (min(h - 8 * i, 8), min(w - 8 * j, 8))
            alone = jpeg._solve(*one, q, free[i : i + 1, j : j + 1], size)
            assert np.array_equal(together[i, j], alone[0, 0])


def test_blocks_across_the_images_edge_are_found_as_the_encoder_filled_them():
    # The encoder filled the blocks past the bottom and right edges by repeating the last row and
    # column; the search that knows it meets most of their pixels (9-11% missed, where one
    # blind to it missed 48-65%; the blocks inside miss none).
    pixels, im = _once_a_jpeg(_pizza(124, 100), 90, 0)  # 4 and 4 samples into the last blocks
    true = np.stack([np.array(im.quantization[0]).reshape(8, 8)] + [np.array(im.quantization[1]).reshape(8, 8)] * 2)
    model = jpeg._fit(jpeg._targets(pixels, 0, (0, 0)), true)
    missed = np.any(libjpeg.reconstruct(model, 124, 100) != pixels, -1)
    assert missed[120:].mean() < 0.2 and missed[:, 96:].mean() < 0.2 and not missed[:120, :96].any()


def test_a_stuck_block_takes_the_move_that_leaves_the_least_error():
    r = np.random.default_rng(3)
    q = np.ones((8, 8), np.int64)
    k = r.integers(-3, 4, (8, 8)) * (r.random((8, 8)) < 0.3)
    target = libjpeg.idct(k * q) + (r.random((8, 8)) < 0.08) * r.choice([-1, 1], (8, 8))
    free = r.random((8, 8)) < 0.1
    decoded = libjpeg.idct(k * q)
    g = jpeg.fdct((np.where(free, decoded, target) - decoded).astype(np.float64))
    step = np.empty((8, 8), np.int64)
    jpeg._best_move(k, g, np.where(free, decoded, target), free, q, step)

    def cost(move):
        return np.abs(np.where(free, 0, target - libjpeg.idct((k + move) * q))).sum()

    singles = [np.sign(g.ravel()[z]) * np.eye(64, dtype=np.int64)[z].reshape(8, 8) for z in range(64)]
    top = np.argsort(-np.abs(g.ravel()), kind="stable")[: jpeg.MOVES]
    moves = [singles[z] for z in top] + [np.round(a * g).astype(np.int64) for a in jpeg.SCALES]
    assert cost(step) == min(cost(m) for m in moves) and any(np.array_equal(step, m) for m in moves)


@pytest.mark.parametrize("sampling", [1, 2])
def test_upsampled_at_is_upsample_sample_by_sample(sampling):
    hs, vs = libjpeg.SAMPLINGS[sampling]
    for shape in [(1, 1), (3, 5), (7, 4)]:
        c = np.random.default_rng(sum(shape)).integers(0, 256, shape)
        up = libjpeg.upsample(c, sampling)
        at = [[libjpeg.upsampled_at(c, y, x, hs, vs) for x in range(up.shape[1])] for y in range(up.shape[0])]
        assert np.array_equal(np.array(at), up)


def test_rgb_one_is_ycc_to_rgb():
    y, cb, cr = np.random.default_rng(0).integers(0, 256, (3, 3000))
    one = np.array([libjpeg.rgb_one(int(a), int(b), int(c)) for a, b, c in zip(y, cb, cr)])
    assert np.array_equal(one, libjpeg.ycc_to_rgb(y, cb, cr))


@pytest.mark.parametrize("sampling", [0, 1])
def test_polishing_moves_blocks_back_onto_the_pixels_and_never_misses_more(sampling):
    pixels, im = _once_a_jpeg(_pizza(64, 64), 90, sampling)
    model = jpeg.choose(pixels)[0]

    def misses(m):
        return np.count_nonzero(np.any(libjpeg.reconstruct(m, 64, 64) != pixels, -1))

    coefs = [c.copy() for c in model.coefs]
    r = np.random.default_rng(sampling)
    for plane in (0, 1, 2):  # low frequencies of a few blocks of each plane
        rows, cols = coefs[plane].shape[:2]
        for i, j in zip(r.integers(0, rows, 4), r.integers(0, cols, 4)):
            coefs[plane][i, j, r.integers(0, 3), r.integers(0, 3)] += r.choice([-1, 1])
    knocked = libjpeg.JpegModel(model.sampling, model.quant, coefs, model.offset)
    polished = jpeg._polished(pixels, knocked)
    assert misses(knocked) > misses(model) + 20
    assert misses(polished) <= misses(model) + 2 and misses(jpeg._polished(pixels, model)) <= misses(model)


def test_auto_codes_a_large_photo_the_jpeg_model_is_sure_of_without_the_screen_model(monkeypatch):
    from nfcompress import policy

    screened = []
    screen = policy.MODEL_FREE["screen"]
    monkeypatch.setattr(policy, "repeat_share", lambda colour: 1.0)  # as if every pixel repeated
    monkeypatch.setattr(screen, "encode", lambda c, *a: screened.append(c.shape) or type(screen).encode(screen, c))
    photo, _ = _once_a_jpeg(np.tile(_pizza(), (2, 2, 1)), 90, 1)  # 256x256, thousands of colours
    res = Codec.load().encode(photo)
    assert res.coder == "jpeg" and screened == [] and np.array_equal(decode(res.data), photo)
    # Few colours: the screen model comes first, as it may code alone.
    flat = (photo // 64 * 64).astype(np.uint8)
    Codec.load().encode(flat)
    assert screened == [flat.shape]
