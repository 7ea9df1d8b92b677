"""The screen model: exact round trips of any image, causal candidates, integer tables, and what
it is for (screen content, recognised cheaply by auto)."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import photo_like, reheaded
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageDraw

import nfcompress
from nfcompress import policy
from nfcompress.codec import Codec, colour_planes
from nfcompress.coders.screen import content, kernels, model, prior
from nfcompress.container import WRITTEN, Header, pack, unpack
from nfcompress.errors import FormatError, NfcError


def _round_trip(img: np.ndarray, scheme: model.Scheme = model.SCHEME) -> bytes:
    data, bits = model.encode(img, scheme)
    assert np.array_equal(model.decode(data, *img.shape, scheme), img)
    assert abs(8 * len(data) - bits) < 32 * (2 + len(data) // 4096)  # each segment's flush and count
    return data


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 24),
    st.integers(1, 24),
    st.sampled_from([1, 3]),
    st.integers(1, 256),
    st.integers(0, 2**32 - 1),
)
def test_round_trips_exactly_with_any_number_of_colours(h, w, c, colours, seed):
    r = np.random.default_rng(seed)
    palette = r.integers(0, 256, (colours, c), dtype=np.uint8)
    _round_trip(palette[r.integers(0, colours, (h, w))])


@settings(max_examples=10, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30), st.sampled_from([1, 3]))),
    st.sampled_from(sorted(model.SCHEMES)),
)
def test_round_trips_exactly_on_any_array_in_every_scheme(img, version):
    _round_trip(img, model.SCHEMES[version])


def test_every_scheme_writes_its_golden_files_payloads_again():
    from make_golden import GOLDEN, read_manifest

    entries = [e for e in read_manifest() if e["kind"] == "screen"]
    assert {e["format_version"] for e in entries} == set(model.SCHEMES)
    for entry in entries:
        header, chunks = unpack((GOLDEN / entry["file"]).read_bytes())[:2]
        pixels = nfcompress.load_image(GOLDEN / entry["source"])
        colour = colour_planes(pixels)
        assert model.encode(colour, model.SCHEMES[header.version])[0] == chunks[0], entry["file"]


def test_hash_sets_are_prefixes_of_the_candidates_so_that_one_pass_hashes_them_all():
    for scheme in model.SCHEMES.values():
        assert all(s == tuple(range(len(s))) and len(s) <= len(model.CANDIDATES) for s in scheme.hash_sets)


def test_a_palette_rank_gives_back_its_colour():
    r = np.random.default_rng(3)
    for channels in (1, 3):
        palette = r.permutation(1 << (8 * channels))[: r.integers(1, model.PALETTE + 1)].astype(np.int64)
        n, p = 200, len(palette)
        pred = r.integers(0, 256, (n, channels)).astype(np.int64)
        taken = np.where(r.random((n, 6)) < 0.5, r.integers(0, p, (n, 6)), -1).astype(np.int64)
        index = r.integers(0, p, n).astype(np.int64)
        index = np.where((taken == index[:, None]).any(1), -1, index)  # an escaped colour is no candidate's
        index, pred, taken = index[index >= 0], pred[index >= 0], taken[index >= 0]
        keys = np.empty(p, np.int64)
        rank = np.array([kernels._rank(palette, pred[i], taken[i], index[i], keys) for i in range(len(index))])
        assert (rank >= 0).all() and (rank < p).all()
        back = [kernels._colour(palette, pred[i], taken[i], rank[i], keys) for i in range(len(index))]
        assert (np.array(back) == palette[index]).all()


def _weights(counts: np.ndarray) -> np.ndarray:
    """The coder's integer weights of each row of counts (`kernels._normalise`)."""
    out = np.empty(counts.shape, np.int64)
    for row, w in zip(counts.astype(np.int64), out):
        kernels._normalise(row, w)
    return out


def test_weights_are_the_integer_formula_summing_to_the_precision_with_zero_where_a_symbol_cannot_come():
    r = np.random.default_rng(4)
    counts = r.integers(0, 10**6, (300, 19)) * r.integers(0, 2, (300, 19))
    counts[np.arange(300), r.integers(0, 19, 300)] += 1  # a symbol that can come, at least
    total = (1 << 24) - 19
    want = counts * total // counts.sum(1, keepdims=True)
    want[np.arange(300), np.argmax(want, 1)] += total - want.sum(1)
    w = _weights(counts)
    assert (w == want).all() and (w.sum(1) == total).all() and (w[counts == 0] == 0).all()


def test_a_new_colours_context_is_its_gradients_bit_length_capped():
    near = np.array([[[0, 0, 0]], [[5, 0, 0]], [[0, 9, 1]], [[255, 0, 0]], [[3, 3, 3]]], np.int64)
    none = np.zeros(len(near), np.int64)
    pred, ctx = kernels.raw_predict(near, np.arange(len(near)), 0, none, none)
    gradient = np.abs(near[:, 0, 0] - near[:, 0, 2]) + np.abs(near[:, 0, 1] - near[:, 0, 2])
    assert ctx.tolist() == [min(int(g).bit_length(), model.RAW_CONTEXTS - 1) for g in gradient]
    assert pred.tolist() == [0, 5, 8, 255, 3]  # the median of W, N and W + N - NW


@pytest.mark.parametrize("shape", [(1, 300, 3), (300, 1, 1), (257, 260, 3), (520, 9, 3)])
def test_tiles_and_segments_join_exactly(shape):
    r = np.random.default_rng(3)
    img = (r.integers(0, 5, shape) * 50).astype(np.uint8)
    img[: shape[0] // 2] = photo_like(shape[0] // 2, shape[1], shape[2], seed=4)
    data = _round_trip(img)
    if img.size > 4 * model.SEGMENT:
        assert len(model._Layout(*shape[:2]).segments()) > 1 and len(data)


def test_every_candidate_lies_on_an_earlier_wavefront_inside_the_padding():
    for u, v in model.CANDIDATES:
        assert 2 * u + v >= 1, (u, v)  # wavefront t = 2 i + j: the candidate's is t - (2u + v)
        assert 0 <= u <= model.TOP and -model.RIGHT <= v <= model.LEFT


def _screenshot(h: int = 120, w: int = 200) -> np.ndarray:
    im = Image.new("RGB", (w, h), (239, 240, 241))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, w - 1, 16), fill=(49, 54, 59))
    for k in range(5):
        d.text((6, 22 + 18 * k), f"Item {k}: settings and more text", fill=(35, 38, 41))
    d.rectangle((w - 50, h - 24, w - 8, h - 6), fill=(61, 174, 233))
    d.text((w - 40, h - 21), "OK", fill=(255, 255, 255))
    return np.asarray(im)


def test_screen_content_codes_far_smaller_than_the_linear_model_and_png():
    import io

    img = _screenshot()
    screen = len(model.encode(img)[0])
    linear = len(Codec.load().encode(img, coder="linear").data)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG", optimize=True)
    assert screen < 0.6 * linear and screen < len(buf.getvalue())


def _spy_on_photo_models(monkeypatch) -> list[int]:
    """The number of images each call of the photo models got."""
    tried, real = [], policy.encode_auto
    monkeypatch.setattr(
        policy, "encode_auto", lambda colours, *a: tried.append((len(colours), a[0])) or real(colours, *a)
    )
    return tried


def test_auto_recognises_screen_content_and_tries_no_photo_model(monkeypatch):
    tried = _spy_on_photo_models(monkeypatch)
    img = _screenshot()
    assert policy.repeat_share(img) >= policy.SCREEN_FROM
    res = Codec.load().encode(img)
    h = unpack(res.data)[0]
    assert (res.coder, h.kind, h.version, tried) == ("screen", "screen", WRITTEN["screen"], [])
    assert np.array_equal(nfcompress.decode(res.data), img)


def test_auto_tries_the_photo_models_too_on_thumbnails_and_photos_with_flat_regions(monkeypatch):
    tried = _spy_on_photo_models(monkeypatch)
    codec = Codec.load()
    thumb = _screenshot(60, 80)  # screen content, but of at most 128x128 pixels
    flat_photo = np.full((200, 200, 3), 20, np.uint8)  # a black sky over a photo
    flat_photo[100:] = photo_like(100, 200, 3, seed=6)
    for img in (thumb, flat_photo):
        assert policy.repeat_share(img) >= policy.SCREEN_FROM
        res = codec.encode(img)
        assert np.array_equal(nfcompress.decode(res.data), img)
    assert tried == [(1, None), (1, None)]  # at effort 1, without the flow
    assert policy.colour_count(flat_photo) > policy.SCREEN_COLOURS


def test_auto_tries_the_flow_and_the_linear_model_on_a_32x32_thumbnail_from_effort_2(monkeypatch):
    tried = _spy_on_photo_models(monkeypatch)
    linear, real = [], policy.encode_linear_or_jpeg
    monkeypatch.setattr(policy, "encode_linear_or_jpeg", lambda c, *a, **k: linear.append(c.shape) or real(c, *a, **k))
    codec = Codec.load()
    thumb = photo_like(32, 32, 3, seed=2)
    assert policy.FLOW_FROM_EFFORT == 2
    for effort in (1, 2):
        assert np.array_equal(nfcompress.decode(codec.encode(thumb, effort=effort).data), thumb)
    assert [flow is not None for _, flow in tried] == [False, True]
    assert linear == [(32, 32, 3)]  # at effort 2 only (policy.LINEAR_SMALL)


def test_auto_leaves_photos_to_the_photo_models():
    img = photo_like(48, 40, 3, seed=11)
    assert policy.repeat_share(img) < policy.SCREEN_FROM
    assert policy.encode_screen(img) is None


def test_screen_files_of_grey_and_alpha_images_decode(tmp_path):
    img = _screenshot(60, 80)
    grey = img[..., 1]
    rgba = np.dstack([img, np.full(img.shape[:2], 200, np.uint8)])
    for pixels in (grey, rgba):
        data = nfcompress.encode(pixels, coder="screen")
        assert unpack(data)[0].kind == "screen" and np.array_equal(nfcompress.decode(data), pixels)


def test_a_screen_payload_is_read_from_version_11_on():
    head = Header("", b"", 4, 3, "L", 0, 0, 0, device="any", kind="screen")
    data = bytearray(pack(head, [b"\0" * 8]))
    assert data[3] == WRITTEN["screen"] and unpack(bytes(data))[0].kind == "screen"
    with pytest.raises(FormatError, match="model-free file cannot have"):
        unpack(reheaded(bytes(data), 10))


def test_damaged_screen_files_are_refused_never_wrong():
    img = _screenshot(40, 60)
    data = nfcompress.encode(img, coder="screen")
    r = np.random.default_rng(5)
    head = len(data) - unpack(data)[0].chunk_sizes[0]
    for _ in range(40):
        bad = bytearray(data)
        k = int(r.integers(head, len(bad)))
        bad[k] ^= 1 << int(r.integers(0, 8))
        try:
            out = nfcompress.decode(bytes(bad))
        except NfcError:
            continue
        assert np.array_equal(out, img)
    with pytest.raises(NfcError):
        nfcompress.decode(data[:-4])


def _fresh_state_payloads(monkeypatch, images: list[np.ndarray], scheme: model.Scheme = model.SCHEME) -> list[bytes]:
    """Each image's payload from a state of arrays no earlier state used."""
    out = []
    for img in images:
        monkeypatch.setattr(model, "_SPARES", model._Spares())
        out.append(model.encode(img, scheme)[0])
    monkeypatch.setattr(model, "_SPARES", model._Spares())
    return out


def test_a_state_on_the_arrays_of_earlier_ones_codes_as_a_fresh_one(monkeypatch):
    white = np.full((5, 7, 3), 255, np.uint8)
    white[2, 3] = 0
    images = [_screenshot(40, 60), photo_like(24, 20, 1), white, photo_like(30, 33, 3, seed=2), _screenshot(20, 30)]
    schemes = list(model.SCHEMES.values())  # counts from a prior and from ones
    fresh = [_fresh_state_payloads(monkeypatch, images, scheme) for scheme in schemes]
    bad = bytearray(fresh[-1][0])
    bad[len(bad) // 2] ^= 0x10
    monkeypatch.setattr(model, "GENERATIONS", 4)  # the tables are cleared every 4 states
    for _ in range(3):
        for scheme, payloads in zip(schemes, fresh):
            for img, data in zip(images, payloads):
                assert model.encode(img, scheme)[0] == data
                assert np.array_equal(model.decode(data, *img.shape, scheme), img)
        with pytest.raises(FormatError):
            model.decode(bytes(bad), 40, 60, 3)


def test_the_tables_last_generation_holds_the_largest_colour(monkeypatch):
    white = np.full((6, 6, 3), 255, np.uint8)
    white[::2, ::3] = 7
    data = _fresh_state_payloads(monkeypatch, [white])[0]
    for _ in range(kernels.GENERATIONS + 2):
        assert model.encode(white)[0] == data


def test_states_coding_on_threads_at_once_take_arrays_of_their_own(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    images = [photo_like(40, 40 + k, 3, seed=k) for k in range(4)] + [_screenshot(48, 64)] * 4
    fresh = _fresh_state_payloads(monkeypatch, images)
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(lambda img: model.encode(img)[0], images)) == fresh


def test_prior_counts_are_integers_from_shares_of_what_was_met():
    occ = {"slots": np.array([[0, 0, 0], [3, 1, 0], [0, 0, 7]]), "raw": np.zeros((1, 2, 4), np.int64)}
    counts = prior.from_occurrences(occ)
    assert (counts["slots"][0] == 1).all() and (counts["raw"] == 1).all()
    assert counts["slots"][1].tolist() == [1 + prior.MASS * 3 // 4, 1 + prior.MASS // 4, 1]
    assert counts["slots"][2].tolist() == [1, 1, 1 + prior.MASS]


def test_the_shipped_prior_is_the_one_the_newest_payload_pins_and_a_damaged_one_is_refused(tmp_path):
    scheme = model.SCHEME
    assert scheme.prior and json.loads(prior.PRIOR_FILE.with_suffix(".json").read_text())["sha256"] == scheme.prior
    counts = prior.load(scheme.prior)
    assert counts["slots"].shape == (model.CONTEXTS, scheme.slots) and counts["slots"].min() >= 1
    bad = tmp_path / "prior.safetensors"
    data = bytearray(prior.PRIOR_FILE.read_bytes())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(NfcError, match="reinstall"):
        prior.load(scheme.prior, bad)


def test_the_learned_prior_makes_screen_content_smaller_than_counts_from_one():
    img = _screenshot(150, 260)
    learned = len(model.encode(img)[0])
    uniform = len(model.encode(img, replace(model.SCHEME, prior=""))[0])
    assert learned < 0.95 * uniform
    grey = np.ascontiguousarray(img[..., 1:2])
    assert len(model.encode(grey)[0]) < len(model.encode(grey, replace(model.SCHEME, prior=""))[0])


def test_occurrences_count_every_pixel_once():
    img = _screenshot(40, 70)
    occ = model.occurrences(img)
    assert occ["slots"].sum() == img.shape[0] * img.shape[1] == occ["coarse"].sum()
    assert (occ["slots"] >= 0).all()


def test_rows_that_repeat_at_a_period_are_found_and_coded_from_that_far_up():
    strip = Image.new("RGB", (260, 11), (239, 240, 241))
    ImageDraw.Draw(strip).text((2, 0), "Options: values, and a longer label", fill=(35, 38, 41))
    img = np.concatenate([np.asarray(strip)] * 18 + [np.asarray(strip)[:5]])
    assert model._period(content.colours(img)) == 11
    data = _round_trip(img)
    assert int(np.frombuffer(data[:4], "<u4")[0]) == 11
    uniform = replace(model.SCHEME, prior="")  # the prior fits the newest scheme's slots only
    assert len(model.encode(img, uniform)[0]) < len(model.encode(img, replace(uniform, period=False))[0])
    assert model._period(content.colours(photo_like(40, 40, 3, seed=1))) in (0, *range(4, model.PERIOD + 1))


def test_a_period_out_of_range_is_refused():
    img = _screenshot(30, 40)
    data = bytearray(model.encode(img)[0])
    data[:4] = np.array([model.PERIOD + 1], "<u4").tobytes()
    with pytest.raises(FormatError, match="period"):
        model.decode(bytes(data), *img.shape)


def test_auto_at_effort_1_encodes_and_decodes_a_thumbnail_without_loading_torch():
    code = (
        "import sys, numpy as np, nfcompress\n"
        "img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)\n"
        "assert np.array_equal(nfcompress.decode(nfcompress.encode(img)), img)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
