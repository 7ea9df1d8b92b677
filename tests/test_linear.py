"""The per-image linear model: exact round trips, its tables, and what it is for (smooth photos)."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import photo_like, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from nfcompress.codec import encode_linear
from nfcompress.coders.linear import model as linear
from nfcompress.coding.primitives import FLOOR, FRAC_BITS, PRECISION, LogisticTables
from nfcompress.container import unpack
from nfcompress.errors import ChecksumError, FormatError


def _round_trip(img: np.ndarray) -> tuple[bytes, float]:
    data, pixel_bits, side = linear.encode(img)
    assert side == linear.side_bits(linear.fit(np.ascontiguousarray(img[..., linear.coding_order(img.shape[2])])))
    back = linear.decode(data, img.shape[0], img.shape[1], img.shape[2])
    assert back.dtype == np.uint8 and np.array_equal(back, img)
    assert pixel_bits.shape == img.shape[:2] and (pixel_bits > 0).all()
    return data, float(pixel_bits.sum()) + side


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 3), (9, 1, 3), (2, 2, 1), (5, 7, 3), (33, 17, 1), (40, 64, 3)])
def test_round_trips_exactly_on_every_shape(shape):
    _round_trip(photo_like(*shape, seed=sum(shape)))


@pytest.mark.parametrize("fill", ["zeros", "full", "extremes"])
def test_round_trips_exactly_at_the_extremes(fill):
    r = np.random.default_rng(1)
    img = {
        "zeros": np.zeros((20, 30, 3), np.uint8),
        "full": np.full((20, 30, 3), 255, np.uint8),
        "extremes": (r.integers(0, 2, (20, 30, 3)) * 255).astype(np.uint8),
    }[fill]
    _round_trip(img)


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([1, 3]))))
def test_round_trips_exactly_on_any_image(img):
    _round_trip(img)


def _spiked(rows: np.ndarray, at: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The spiked rows as the vector code built them before 0.13 (what the files hold): rows (n,
    256) of `LogisticTables.rows`, a share q / SPIKES of every weight above the floor (rounded
    down) moved to value at[k] of row k."""
    if not q.any():
        return rows
    rows -= FLOOR
    rows *= ((linear.SPIKES - q) / linear.SPIKES)[:, None]
    np.floor(rows, out=rows)
    rows += FLOOR
    rows[np.arange(len(rows)), at] += (1 << PRECISION) - 256 - rows.sum(1)
    return rows


def _compiled_rows(tables: LogisticTables, p: np.ndarray, contexts: np.ndarray, at, q) -> np.ndarray:
    """The weights the compiled coder codes each value under (`symbols._weights`), row by row."""
    from nfcompress.coders.linear import symbols

    row, ip = tables.index(p, contexts)
    out = np.empty((len(p), 256))
    for k in range(len(p)):
        symbols._weights(tables.cum, row[k], 255 - ip[k], q[k], at[k], linear.SPIKES, out[k])
    return out


@pytest.mark.parametrize("spiked", [False, True])
def test_every_spiked_table_row_keeps_its_floor_and_sums_to_the_precision(spiked):
    tables = LogisticTables(np.array([0, 7, 40, 64, 100, 140, 200, 255] * 4))
    p = np.arange(0, 256 << FRAC_BITS, 997, dtype=np.int64)
    r = np.random.default_rng(0)
    for b in range(0, linear.CONTEXTS, 3):
        at, q = r.integers(0, 256, len(p)), r.integers(0, linear.SPIKES, len(p)) * spiked
        plain = tables.rows(p, np.full(len(p), b))
        rows = _compiled_rows(tables, p, np.full(len(p), b), at, q)
        assert np.array_equal(rows, _spiked(plain.copy(), at, q))
        if spiked:
            # The spike's value gains about the share of what the others had above the floor.
            k = np.arange(len(p))
            gain = rows[k, at] - plain[k, at]
            above = (1 << PRECISION) - 256 * (1 + FLOOR) - (plain[k, at] - FLOOR)
            assert np.allclose(gain, q / linear.SPIKES * above, atol=256)
        assert (rows >= FLOOR).all()
        assert (rows.sum(1) == (1 << PRECISION) - 256).all()


def test_values_that_the_median_predicts_exactly_get_a_spike_and_cost_less():
    g = photo_like(96, 96, 1, seed=19)[..., 0].astype(np.int64)
    steps = (np.arange(96)[None, :] // 24) * 9 + (np.arange(96)[:, None] // 32) * 5  # flat patches
    img = np.stack([np.clip(g + steps, 0, 255), g, np.clip(g - steps, 0, 255)], 2).astype(np.uint8)
    model = linear.fit(np.ascontiguousarray(img[..., linear.coding_order(3)]))
    assert max(q.max() for q in model.spikes[1:]) >= linear.SPIKES // 2
    plain = linear.LinearModel(model.weights, model.scales, [np.zeros_like(q) for q in model.spikes], model.feedback)
    spiked_data, *_ = linear.encode(img, model)
    plain_data, *_ = linear.encode(img, plain)
    assert len(spiked_data) < 0.97 * len(plain_data)
    assert np.array_equal(linear.decode(spiked_data, 96, 96, 3), img)


def test_a_smooth_image_costs_far_fewer_bits_than_noise():
    yy, xx = np.mgrid[0:96, 0:96]
    smooth = np.stack([(yy + xx) % 256, (2 * yy) % 256, 128 + 0 * xx], 2).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    smooth_data, _ = _round_trip(smooth)
    noise_data, _ = _round_trip(noise)
    assert 8 * len(smooth_data) / smooth.size < 0.5
    assert 8 * len(noise_data) / noise.size > 7.5


def test_green_first_makes_red_and_blue_cheap_when_they_follow_it():
    g = photo_like(64, 64, 1, seed=3)[..., 0].astype(np.int64)
    img = np.stack([np.clip(g + 10, 0, 255), g, np.clip(g - 20, 0, 255)], 2).astype(np.uint8)
    grey_data, _ = _round_trip(np.ascontiguousarray(img[..., 1:2]))
    colour_data, _ = _round_trip(img)
    assert len(colour_data) < 1.25 * len(grey_data)


def test_the_file_size_is_the_ideal_size_of_the_pixels_and_the_fitted_model():
    img = photo_like(128, 128, 3, seed=5)
    data, ideal = _round_trip(img)
    model = linear.fit(np.ascontiguousarray(img[..., linear.coding_order(3)]))
    raw = 16 * model.weights[0].size + 16 * sum(w.size for w in model.weights[1:]) + 8 * 3 * linear._context_count(2)
    assert 0.5 * raw < linear.side_bits(model) < raw  # the weights and scales take fewer bits than 16 and 8
    assert ideal - 64 < 8 * len(data) <= ideal + 64


def test_a_damaged_stream_fails_or_differs_but_never_hangs():
    img = photo_like(16, 16, 3, seed=2)
    data, *_ = linear.encode(img)
    with pytest.raises(FormatError):
        linear.decode(data[:-1], 16, 16, 3)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    try:
        back = linear.decode(bytes(damaged), 16, 16, 3)
    except FormatError:
        return
    assert back.shape == img.shape  # the codec's pixel checksum then refuses it


def test_a_payload_too_short_for_its_declared_size_is_refused_before_any_work():
    data, *_ = linear.encode(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FormatError, match="cannot hold"):
        linear.decode(data, 16384, 16384, 3)


def test_auto_keeps_the_smallest_file_of_those_it_tries(tiny_codec):
    # A smooth photo-like image and noise; from effort 2 auto tries the flow too.
    for img in [photo_like(48, 40, 3, seed=11), np.random.default_rng(3).integers(0, 256, (36, 36, 3), np.uint8)]:
        sizes = {
            c: len(tiny_codec.encode(img, coder=c, effort=2).data) for c in ("flow", "linear", "adaptive", "causal")
        }
        res = tiny_codec.encode(img, coder="auto", effort=2)
        assert len(res.data) == min(sizes.values())
        assert res.coder == min(sizes, key=sizes.get) and unpack(res.data)[0].kind == res.coder
        assert np.array_equal(tiny_codec.decode(res.data), img)


def test_encode_many_gives_the_bytes_of_one_at_a_time_whichever_coder_wins(tiny_codec):
    images = [photo_like(48, 40, 3, seed=11), photo_like(8, 8, 3, seed=2), photo_like(30, 20, 1, seed=4)[..., 0]]
    many = tiny_codec.encode_many(images, coder="auto")
    assert [r.data for r in many] == [tiny_codec.encode(im, coder="auto").data for im in images]
    coders = {r.coder for r in many}
    assert "linear" in coders and len(coders) >= 2 and coders <= {"flow", "linear", "causal", "adaptive"}
    for got, want in zip(tiny_codec.decode_many([r.data for r in many]), images):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_mode_round_trips_through_a_linear_file(tiny_codec, channels):
    img = photo_like(21, 34, channels, seed=channels)
    img = img[..., 0] if channels == 1 else img
    res = tiny_codec.encode(img, coder="linear")
    assert res.coder == "linear" and res.portable
    assert np.array_equal(tiny_codec.decode(res.data), img)
    assert res.ideal_bits < 8 * len(res.data)


def test_a_linear_file_decodes_without_loading_any_model(monkeypatch):
    import nfcompress.api

    img = photo_like(24, 24, 3, seed=6)
    data = encode_linear(img).data

    def no_model(*a, **kw):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(nfcompress.api, "get_codec", no_model)
    assert np.array_equal(nfcompress.api.decode(data), img)


def test_decoding_linear_files_to_pngs_loads_no_model_either(monkeypatch, tmp_path):
    import nfcompress.api
    from nfcompress.batch import decode_files

    images = [photo_like(24, 24, 3, seed=6), photo_like(30, 20, 1, seed=7)[..., 0], photo_like(300, 290, 3, seed=8)]
    pairs = []
    for k, img in enumerate(images):
        (tmp_path / f"{k}.nfc").write_bytes(encode_linear(img).data)
        pairs.append((str(tmp_path / f"{k}.nfc"), str(tmp_path / f"{k}.png")))
    (tmp_path / "bad.nfc").write_bytes(encode_linear(images[0]).data[:-9])
    pairs.append((str(tmp_path / "bad.nfc"), str(tmp_path / "bad.png")))
    monkeypatch.setattr(nfcompress.api, "get_codec", lambda *a, **kw: pytest.fail("a model was loaded"))
    results = decode_files(pairs)
    for (_, png), img, res in zip(pairs, images, results):
        assert isinstance(res, dict) and np.array_equal(np.asarray(Image.open(png)), img)
    assert isinstance(results[-1], ChecksumError | FormatError) and not (tmp_path / "bad.png").exists()


def test_a_damaged_linear_file_is_refused_by_its_checksum(tiny_codec):
    img = photo_like(24, 24, 3, seed=7)
    data = bytearray(tiny_codec.encode(img, coder="linear").data)
    data[-3] ^= 0x10
    with pytest.raises((ChecksumError, FormatError)):
        tiny_codec.decode(bytes(data))


# Small; and large enough for the local prediction and the block positions (scheme 3).
@pytest.mark.parametrize("size", [(50, 70), (370, 364)])
def test_encode_and_decode_in_separate_processes_with_other_thread_counts(tmp_path, size):
    from click.testing import CliRunner

    from nfcompress.cli import main

    img = photo_like(*size, 3, seed=12) if size[0] < 128 else _blocky(*size, (2, 6), seed=12)
    src = tmp_path / "a.png"
    Image.fromarray(img).save(src)
    r = run_cli(["encode", "--coder", "linear", str(src)], 1)
    assert r.returncode == 0, r.stderr
    info = json.loads(CliRunner().invoke(main, ["info", "--json", str(tmp_path / "a.nfc")]).output)
    assert (info["coder"], info["model"], info["portable"], info["chunks"]) == ("linear", None, True, 1)
    src.rename(tmp_path / "orig.png")
    r = run_cli(["decode", str(tmp_path / "a.nfc")], 2)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), img)


def test_larger_images_fit_more_predictor_classes_and_still_round_trip():
    img = photo_like(130, 130, 3, seed=13)
    model = linear.fit(np.ascontiguousarray(img[..., linear.coding_order(3)]))
    assert model.classes == 2 and all(w.shape[0] == 3 for w in model.weights)  # and the edges' own
    assert not all(np.array_equal(w[0], w[1]) for w in model.weights)
    _round_trip(img)


def test_from_four_classes_gradients_and_errors_have_contexts_of_their_own():
    img = photo_like(370, 360, 3, seed=18)
    model, rasters = linear._fit(np.ascontiguousarray(img[..., linear.coding_order(3)]))
    assert model.classes == 4 and all(len(s) == linear._context_count(4) == 16 * linear.BINS for s in model.scales)
    used = np.unique(np.concatenate([r.contexts for r in rasters]))
    assert used.min() >= 0 and used.max() < 16 * linear.BINS and len(used) > 2 * linear.BINS
    _round_trip(img)


def _blocky(h: int, w: int, offset: tuple[int, int], seed: int) -> np.ndarray:
    """A photo-like image with a step at every edge of an 8x8 grid at `offset`, as JPEG leaves."""
    r = np.random.default_rng(seed)
    ii, jj = np.mgrid[0:h, 0:w]
    block = ((ii - offset[0]) // 8) * 1000 + (jj - offset[1]) // 8
    steps = r.integers(-16, 17, (block.max() - block.min() + 1, 3))[block - block.min()]
    return np.clip(photo_like(h, w, 3, seed).astype(np.int64) + steps, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("offset", [(0, 0), (3, 5), (7, 1)])
def test_the_block_grid_a_jpeg_left_is_found(offset):
    assert linear.block_grid(_blocky(64, 80, offset, seed=sum(offset))) == offset


def test_from_four_classes_the_block_grid_splits_the_weights_and_pays(monkeypatch):
    img = _blocky(370, 360, (3, 5), seed=21)
    data, bits = _round_trip(img)
    model = linear.fit(np.ascontiguousarray(img[..., linear.coding_order(3)]))
    assert model.blocks == (3, 5) and model.classes == 4
    assert all(w.shape[0] == 4 * linear.POSITIONS + 1 for w in model.weights)
    monkeypatch.setattr(linear, "block_grid", lambda rgb: (0, 0))
    wrong, wrong_bits = _round_trip(img)
    assert len(data) < 0.99 * len(wrong) and bits < wrong_bits


def test_an_image_of_one_class_reads_fewer_neighbours_and_steps_its_weights():
    img = photo_like(40, 64, 3, seed=5)
    model = linear.fit(np.ascontiguousarray(img[..., linear.coding_order(3)]))
    causal, cross = linear.SMALL
    # The bias and the median; no local prediction under 128x128.
    assert model.classes == 1 and [w.shape for w in model.weights] == [(1, causal + cross * c + 2) for c in range(3)]
    assert all((w % linear.SMALL_STEP == 0).all() for w in model.weights + model.feedback)
    _round_trip(img)
    # Weights off the step are rounded onto it, and still decode exactly.
    off = linear.LinearModel([w + 3 for w in model.weights], model.scales, model.spikes, model.feedback, model.blocks)
    data, *_ = linear.encode(img, off)
    assert np.array_equal(linear.decode(data, 40, 64, 3), img)


def test_from_128x128_the_local_prediction_is_a_feature_and_pays_on_a_photo(monkeypatch):
    img = np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "pizza-128.png").convert("RGB"))
    model = linear.fit(np.ascontiguousarray(img[..., linear.coding_order(3)]))
    assert model.classes == 2 and [w.shape[1] for w in model.weights] == [13 + 7 * c + 3 for c in range(3)]
    data, *_ = linear.encode(img)
    monkeypatch.setattr(linear, "_local_on", lambda classes, scheme=linear.SCHEME: False)
    without, *_ = linear.encode(img)
    assert len(data) < 0.995 * len(without)
    assert np.array_equal(linear.decode(without, 128, 128, 3), img)
    monkeypatch.undo()
    assert np.array_equal(linear.decode(data, 128, 128, 3), img)


def test_feedback_from_the_first_stage_errors_is_fitted_and_pays_on_a_photo():
    img = np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "pizza-128.png").convert("RGB"))
    model = linear.fit(np.ascontiguousarray(img[..., linear.coding_order(3)]))
    assert all(f.shape == (linear.ERRORS,) for f in model.feedback) and any(f.any() for f in model.feedback)
    without = linear.LinearModel(model.weights, model.scales, model.spikes, [np.zeros_like(f) for f in model.feedback])
    data, *_ = linear.encode(img, model)
    assert len(data) < len(linear.encode(img, without)[0])
    assert np.array_equal(linear.decode(data, 128, 128, 3), img)


def test_any_weights_and_scales_go_through_the_side_information():
    img = photo_like(12, 10, 3, seed=14)
    r = np.random.default_rng(0)
    counts = linear._feature_counts(3, 4)
    weights = [r.integers(-(1 << 30), 1 << 30, (5, n)) for n in counts]  # 4 classes and the edges'
    for w in weights:
        w[:, :3] = r.integers(-5, 5, (5, 3))  # narrow ones too
    k = linear._context_count(4)
    spikes = [r.integers(0, 16, linear._spike_count(4)) for _ in counts]
    feedback = [r.integers(-(1 << 20), 1 << 20, linear.ERRORS) for _ in counts]
    model = linear.LinearModel(weights, [r.integers(0, 256, k) for _ in counts], spikes, feedback)
    data, *_ = linear.encode(img, model)
    assert np.array_equal(linear.decode(data, 12, 10, 3), img)


def test_a_lone_image_reports_its_progress_through_the_linear_model(tiny_codec):
    img = photo_like(40, 30, 3, seed=17)
    calls = []
    data = tiny_codec.encode(img, coder="linear", progress=lambda d, t: calls.append((d, t))).data
    assert calls and calls[-1] == (6, 6) and all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))
    calls.clear()
    assert np.array_equal(tiny_codec.decode(data, progress=lambda d, t: calls.append((d, t))), img)
    total = 3 * linear.PARTS
    assert calls[-1] == (total, total) and len(calls) == total


def test_bpd_and_heatmap_report_the_linear_model_when_asked_without_loading_a_flow(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import nfcompress.api
    from nfcompress.cli import main

    img = photo_like(40, 36, 3, seed=21)
    Image.fromarray(img).save(tmp_path / "a.png")
    monkeypatch.setattr(nfcompress.api, "get_codec", lambda *a, **kw: pytest.fail("a model was loaded"))
    r = CliRunner().invoke(main, ["bpd", "--coder", "linear", "--json", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    res = encode_linear(img)
    assert json.loads(r.output)["ideal_bpsp"] == round(res.ideal_bits / res.subpixels, 4)
    out = tmp_path / "h.png"
    r = CliRunner().invoke(main, ["heatmap", "--coder", "linear", "--json", str(tmp_path / "a.png"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    pixel_bits = json.loads(r.output)["ideal_bits"]
    assert 0.9 * res.ideal_bits < pixel_bits < res.ideal_bits  # the map leaves the side information out
    assert Image.open(out).size[0] == 2 * 36


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_coder_codes_each_value_under_the_spiked_rows_constriction_was_given(seed):
    import constriction

    from nfcompress.coders.linear import symbols
    from nfcompress.coding import rans

    r = np.random.default_rng(seed)
    n, contexts_count = 4000, 8
    tables = LogisticTables(r.integers(0, 256, contexts_count))
    p = r.integers(0, 256 << FRAC_BITS, n)
    contexts = r.integers(0, contexts_count, n)
    at = r.integers(0, 256, n)
    q = np.where(r.random(n) < 0.5, 0, r.integers(1, linear.SPIKES, n))
    x = r.integers(0, 256, n)
    x[:100], x[100:200], x[200:300] = 0, 255, at[200:300]  # the ends, and the spike's own value
    rows = _spiked(tables.rows(p, contexts), at, q)
    reference = constriction.stream.stack.AnsCoder()
    reference.encode_reverse(x.astype(np.int32), constriction.stream.model.Categorical(perfect=False), rows)
    io = rans.sink(n)
    row, ip = tables.index(p, contexts)
    freq = symbols.record(tables.cum, row, ip, at, q, x, linear.SPIKES, io)
    words = rans.finish(io, rans.NOTHING)
    assert np.array_equal(words, reference.get_compressed())
    assert (freq == rows[np.arange(n), x] + 1).all()
    io = rans.source(words)
    assert np.array_equal(symbols.decode(tables.cum, row, ip, at, q, linear.SPIKES, io), x)
    assert rans.exhausted(io)


def _cheapest_numpy(cost_of, ctx: np.ndarray, n: np.ndarray, codes: np.ndarray) -> dict[int, int]:
    """The first code of each context's candidates `codes` (tried x entries) under which its
    entries cost the fewest bits (cost_of(codes clipped) each, n of each), codes out of 0..255
    passed over: the numpy form the compiled search replaced."""
    starts = np.flatnonzero(np.diff(ctx, prepend=-1))
    cost = np.add.reduceat(cost_of(np.clip(codes, 0, 255)) * n, starts, axis=1)
    cost[(codes[:, starts] < 0) | (codes[:, starts] > 255)] = np.inf
    return dict(zip(ctx[starts].tolist(), codes[np.argmin(cost, axis=0), starts].tolist()))


def test_the_compiled_scale_searches_choose_the_codes_of_the_numpy_form():
    from nfcompress.coders.linear import fitting

    r = np.random.default_rng(9)
    masses, bits = linear._masses()
    ctx = np.sort(r.integers(0, 40, 3000))
    at = r.integers(0, bits.shape[1], 3000)
    at[::3] = bits.shape[1] // 2 + r.integers(-40, 40, 1000)  # residuals near 0
    # The first context's residuals all 0 (code 0 is cheapest), the second's all -256 or 256.
    at[ctx == 0] = bits.shape[1] // 2
    at[ctx == 1] = np.where(r.random((ctx == 1).sum()) < 0.5, 0, bits.shape[1] - 1)
    n = r.integers(1, 30, 3000)
    for tried, near in ((np.arange(4, 256, 8), False), (np.arange(-7, 8), True)):
        start = r.integers(0, 256, 40)
        start[:4] = (0, 255, 1, 254)  # candidates past either end
        out = start.copy()
        fitting.cheapest(bits, ctx, at, n, out, near, tried)
        codes = (start[ctx] if near else 0 * ctx) + tried[:, None]
        assert {c: out[c] for c in np.unique(ctx)} == _cheapest_numpy(lambda q: bits[q, at], ctx, n, codes)
    share, hit = r.integers(0, linear.SPIKES, 3000) / linear.SPIKES, r.integers(0, 2, 3000)
    codes = r.integers(0, 256, 40)
    codes[:4] = (0, 255, 5, 250)
    out = codes.copy()
    fitting.cheapest_spiked(masses, ctx, at, n, share, hit.astype(np.float64), out, np.arange(-12, 13))
    near = codes[ctx] + np.arange(-12, 13)[:, None]
    mixed = lambda q: -np.log2(np.maximum((1 - share) * masses[q, at] + share * hit, 1e-12))  # noqa: E731
    assert {c: out[c] for c in np.unique(ctx)} == _cheapest_numpy(mixed, ctx, n, near)


def test_the_compiled_least_squares_sums_are_numpys_per_weight_set():
    from nfcompress.coders.linear import fitting

    r = np.random.default_rng(10)
    x = r.integers(-4096, 8192, (23, 5000)).astype(np.int32)
    y, om = r.integers(0, 256, 5000).astype(np.float64), r.random(5000) * 3
    sets = r.integers(0, 6, 5000)
    sets[sets == 4] = 3  # a set without pixels
    a, v, count = np.zeros((6, 23, 23)), np.zeros((6, 23)), np.zeros(6, np.int64)
    fitting.normal_sums(x, y, sets, om, a, v, count)
    for k in range(6):
        xk = x[:, sets == k].astype(np.float64)
        assert np.allclose(a[k], (xk * om[sets == k]) @ xk.T, rtol=1e-12, atol=0)
        assert np.allclose(v[k], xk @ (y[sets == k] * om[sets == k]), rtol=1e-12, atol=0)
        assert count[k] == xk.shape[1]
    assert not a[4].any() and count[4] == 0
    assert all(np.array_equal(m, m.T) for m in a)


def test_the_compiled_tally_is_numpys_unique_with_counts():
    from nfcompress.coders.linear import fitting

    r = np.random.default_rng(11)
    for n in (0, 1, 7, 20000):
        major, minor = r.integers(0, 40, n) * 3, r.integers(0, 100, n)
        keys, counts = fitting.tally(major, minor, 100)
        want = np.unique(major * 100 + minor, return_counts=True)
        assert np.array_equal(keys, want[0]) and np.array_equal(counts, want[1])


def _numpy_features(layout, cv, pads, i, j, lp):
    """`_Layout.features` as numpy forms them: canvas and earlier-channel gathers, 1, the local
    predictions, the median of the texture's W, N and NW."""
    parts = [cv[layout.places(i, j)[None, :] - layout.offsets[:, None]]]
    if len(layout.cross):
        parts.append(pads[((i + 1) * (layout.w + 2) + j + 1)[None, :] + layout.cross[:, None]])
    x = np.concatenate([*parts, np.ones((1, len(i)), np.int64)])
    if layout.scheme < 2:
        return x
    nb = layout.texture(x)
    med = np.clip(nb[0] + nb[1] - nb[2], np.minimum(nb[0], nb[1]), np.maximum(nb[0], nb[1]))
    if layout.c:
        med += x[len(layout.offsets)]
    return np.concatenate([x, med[None]] if lp is None else [x, lp[None], med[None]])


@pytest.mark.parametrize("scheme", [1, 2, 3])
def test_the_compiled_features_are_numpys(scheme):
    r = np.random.default_rng(12)
    h, w = 9, 13
    rgb = r.integers(0, 256, (h, w, 3)).astype(np.uint8)
    i, j = np.divmod(np.arange(h * w), w)
    for c in range(3):
        for classes in (1, 4):
            layout = linear._Layout(h, w, c, classes, scheme)
            cv, pads = linear._canvas(rgb[..., c]).ravel(), linear._pads([rgb[..., q] for q in range(c)])
            for lp in (None, r.integers(0, 4096, h * w)):
                got = layout.features(cv, pads, i, j, lp)
                assert np.array_equal(got, _numpy_features(layout, cv, pads, i, j, lp))
                assert np.array_equal(
                    layout.raw(cv, pads, i, j),
                    _numpy_features(layout, cv, pads, i, j, None)[: len(layout.offsets) + len(layout.cross) + 1],
                )


def test_the_compiled_predictions_are_numpys():
    from nfcompress.coders.linear import fitting

    r = np.random.default_rng(13)
    x = r.integers(-300, 4096, (23, 3000)).astype(np.int32)
    weights, sets = r.integers(-(1 << 14), 1 << 14, (9, 23)), r.integers(0, 9, 3000)
    want = np.clip(np.einsum("fn,nf->n", x.astype(np.int64), weights[sets]), 0, 255 << 12)
    got = fitting.predictions(x, weights, sets, 255 << 12)
    assert np.array_equal(got, want) and 0 < (got == 0).sum() < 3000 and (got == 255 << 12).any()


def test_contexts_no_pixel_reads_repeat_the_scale_code_before_them_and_cost_less():
    img = np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "nature-thumb-64x48.png").convert("RGB"))
    fit = linear.fitted(img)
    for codes, r in zip(fit.model.scales, fit.rasters):
        unused = np.bincount(r.contexts, minlength=len(codes)) == 0
        assert unused.any() and not unused.all()
        assert all(codes[k] == (codes[k - 1] if k else 128) for k in np.flatnonzero(unused))
    # Any other codes there decode alike (no pixel reads them) and cost more.
    zeroed = [
        np.where(np.bincount(r.contexts, minlength=len(q)) == 0, 0, q) for q, r in zip(fit.model.scales, fit.rasters)
    ]
    other = linear.LinearModel(fit.model.weights, zeroed, fit.model.spikes, fit.model.feedback, fit.model.blocks)
    data, *_ = linear.encode(img, fit.model)
    data0, *_ = linear.encode(img, other)
    assert len(data) < len(data0) and linear.side_bits(fit.model) < linear.side_bits(other)
    assert np.array_equal(linear.decode(data, 48, 64, 3), img) and np.array_equal(linear.decode(data0, 48, 64, 3), img)
