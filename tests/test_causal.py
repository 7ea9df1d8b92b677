"""The causal model: features read only decoded cells, the integer network is exact, files round-trip."""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import code_apart, reheaded, tiny_planes
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nfcompress import decode
from nfcompress.codec import Codec, decode_model_free_many
from nfcompress.coders.adaptive import model as adaptive_model
from nfcompress.coders.causal import model as causal
from nfcompress.coding import rans
from nfcompress.container import LEAN, Header, pack, unpack
from nfcompress.errors import FormatError, NfcError
from nfcompress.weights import shipped_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
THUMB = EXAMPLES / "nature-thumb-64x48.png"
SHIPPED = shipped_dir()


def _photo(h: int, w: int) -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / "pizza-128.png").convert("RGB"))[:h, :w].copy()


def test_features_read_no_cell_the_decoder_has_not_decoded():
    rng = np.random.default_rng(3)
    x = causal.planes_of(rng.integers(0, 256, (9, 11, 3)).astype(np.uint8))
    h, w = x.shape[1:]
    t = 2 * np.arange(h)[:, None] + np.arange(w)[None, :]  # each pixel's wavefront
    for k in range(3):
        for i, j in [(0, 0), (0, 5), (4, 0), (4, 10), (8, 3)]:
            f, base = causal.features(causal.canvas(x, k), causal.pad_planes(x[:k]), k, np.array([i]), np.array([j]), w)
            later = x.copy()
            later[k][t >= t[i, j]] = rng.integers(0, 256, int((t >= t[i, j]).sum()))
            later[k + 1 :] = rng.integers(0, 256, later[k + 1 :].shape)
            f2, base2 = causal.features(
                causal.canvas(later, k), causal.pad_planes(later[:k]), k, np.array([i]), np.array([j]), w
            )
            assert np.array_equal(f, f2) and np.array_equal(base, base2)
            assert f.shape == (1, causal.feature_count(k))


def _vector_features(cv, earlier, k, i, j, w):
    """`causal.features` in numpy's operations on whole arrays (its form before 0.15)."""
    cw = cv.shape[1]
    at = ((i + causal.PAD) * cw + j + causal.PAD)[:, None]
    own = cv.ravel()[at - np.array([a * cw + b for a, b in causal.CAUSAL])]
    wn = [1 + causal.WINDOW.index(c) for c in ((0, -1), (-1, 0), (-1, -1))]
    wins = [earlier[p].ravel()[at + np.array([a * cw + b for a, b in ((0, 0), *causal.WINDOW)])] for p in range(k)]
    near = own[:, :3] - wins[0][:, wn] if k else own[:, :3]
    dw, dn, dnw = near[:, 0], near[:, 1], near[:, 2]
    base = np.maximum(np.minimum(dw, dn), np.minimum(np.maximum(dw, dn), dw + dn - dnw))
    if k:
        base = base + wins[0][:, 0]
    cols = [own - base[:, None]]
    for win in wins:
        centre = win[:, :1]
        cols += [centre - base[:, None], win[:, 1:] - centre, win[:, wn[:2]] - own[:, :2]]
    flags = np.stack([i == 0, j == 0, i == 1, j == 1, j == w - 1, j == w - 2], 1) * causal.EDGE_FLAG
    cols += [(base - 128)[:, None], flags]
    return np.concatenate(cols, 1), base


def test_compiled_features_are_those_of_the_vector_form():
    rng = np.random.default_rng(6)
    for h, w in ((1, 1), (2, 7), (13, 17), (40, 3)):
        x = causal.planes_of(rng.integers(0, 256, (h, w, 3)).astype(np.uint8))
        i, j = _grid(h, w)
        for k in range(3):
            mine = causal.features(causal.canvas(x, k), causal.pad_planes(x[:k]), k, i, j, w)
            theirs = _vector_features(causal.canvas(x, k), causal.pad_planes(x[:k]), k, i, j, w)
            assert all(a.dtype == np.int64 and np.array_equal(a, b) for a, b in zip(mine, theirs))


def test_the_integer_network_gives_the_same_integers_for_any_batch():
    planes = tiny_planes(0)
    f, _ = causal.features(
        causal.canvas(causal.planes_of(_photo(20, 20)), 0), np.zeros((0, 26, 26), np.int64), 0, *_grid(20, 20), 20
    )
    whole = planes[0].outputs(f)
    assert np.array_equal(whole, np.concatenate([planes[0].outputs(f[i : i + 7]) for i in range(0, len(f), 7)]))
    assert np.array_equal(whole, np.round(whole)) and planes[0].bound() < causal.EXACT_LIMIT


def _network_in_numpy(pw: causal.PlaneWeights, f: np.ndarray) -> np.ndarray:
    """The integer network as numpy's elementwise steps (its form before 0.17)."""
    h = f.astype(np.float64) @ pw.first + pw.first_bias
    h = np.maximum(np.floor(h * 2.0 ** -(causal.FIRST_BITS - causal.ACT_BITS)), 0)
    g = np.maximum(np.floor((h @ pw.second + pw.second_bias) * 2.0**-causal.WEIGHT_BITS), 0) + h
    return g @ pw.out + pw.out_bias


def test_the_networks_compiled_layers_give_numpys_integers_up_to_the_feature_limit():
    rng = np.random.default_rng(3)
    for pw in causal.load() + adaptive_model.load():
        n = pw.first.shape[0]
        for top in (40, 400, causal.FEATURE_LIMIT - 1):  # photos' features, and the largest allowed
            f = rng.integers(-top, top + 1, (700, n))
            assert np.array_equal(pw.outputs(f), _network_in_numpy(pw, f))


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.mgrid[0:h, 0:w]
    return i.ravel(), j.ravel()


def test_every_row_of_weights_sums_to_the_coders_total_and_keeps_a_floor():
    rng = np.random.default_rng(1)
    o = rng.normal(0, 1, (500, 9)) * 2.0**causal.OUT_BITS * rng.choice([0.01, 1, 30], (500, 9))
    rows = causal.mixture_rows(np.round(o), rng.integers(-200, 460, 500) << causal.FRAC_BITS)
    assert np.all(rows.sum(1) == causal.ROW) and rows.min() >= 1


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 19), w=st.integers(1, 19), seed=st.integers(0, 3), noise=st.booleans(), tuned=st.booleans())
def test_any_image_round_trips_under_any_weights(h, w, seed, noise, tuned):
    img = _photo(h, w)
    if noise:
        img = np.random.default_rng(seed).integers(0, 256, img.shape).astype(np.uint8)
    planes = tiny_planes(seed)
    version = causal.ONLINE if tuned else causal.ONLINE - 1
    data, bits, _ = causal.encode(img, planes, version=version)
    assert np.array_equal(causal.decode(data, h, w, planes, version=version), img)
    assert 8 * len(data) >= bits - 64


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 19), w=st.integers(1, 19), seed=st.integers(0, 3), noise=st.booleans())
def test_any_grey_image_round_trips_under_any_weights_as_green_alone(h, w, seed, noise):
    grey = _photo(h, w)[..., 1:2].copy()
    if noise:
        grey = np.random.default_rng(seed).integers(0, 256, grey.shape).astype(np.uint8)
    planes = tiny_planes(seed)
    data, bits, kept = causal.encode(grey, planes, keep=True, version=causal.GREY)
    assert np.array_equal(causal.decode(data, h, w, planes, version=causal.GREY, channels=1), grey)
    assert np.array_equal(causal.replay(data, h, w, kept, channels=1), grey)
    assert 8 * len(data) >= bits - 64 and len(kept[0]) == h * w
    # Green's network alone codes it: red's and blue's are never read.
    others = [planes[0], *tiny_planes(seed + 1)[1:]]
    assert np.array_equal(causal.decode(data, h, w, others, version=causal.GREY, channels=1), grey)
    with pytest.raises(ValueError, match="version 23 or later"):
        causal.encode(grey, planes, version=causal.GREY - 1)
    out = causal.decode_many([data], h, w, planes, version=causal.GREY - 1, channels=1)[0]
    assert isinstance(out, FormatError) and "holds no grey image" in str(out)


def test_grey_and_colour_files_of_one_size_decode_apart_in_a_folder():
    from nfcompress.coders.causal import CausalCoder

    codec = Codec.load()
    colour = _photo(16, 20)
    grey = np.ascontiguousarray(colour[..., 0])
    datas = [codec.encode(img, coder="causal").data for img in (grey, colour, grey[::-1].copy())]
    assert [unpack(d)[0].mode for d in datas] == ["L", "RGB", "L"]
    out = CausalCoder().decode_many([unpack(d)[:2] for d in datas])
    assert [x.shape for x in out] == [(16, 20, 1), (16, 20, 3), (16, 20, 1)]
    assert np.array_equal(decode(datas[0]), grey) and np.array_equal(decode(datas[2]), grey[::-1])


def test_auto_codes_a_grey_thumbnail_with_the_causal_model_and_its_alpha_apart():
    grey = np.asarray(Image.open(THUMB).convert("L"))[:32, :32].copy()
    codec = Codec.load()
    res = codec.encode(grey)
    assert res.coder == "causal" and np.array_equal(decode(res.data), grey)
    assert len(res.data) < len(codec.encode(grey, coder="adaptive").data)
    la = np.dstack([grey, np.full(grey.shape, 200, np.uint8)])
    res = codec.encode(la, coder="causal")
    assert unpack(res.data)[0].mode == "LA" and np.array_equal(decode(res.data), la)


def test_streams_of_one_size_decode_together_as_each_alone_and_a_bad_one_fails_alone():
    planes = tiny_planes(1)
    images = [_photo(9, 13)] + [
        np.random.default_rng(s).integers(0, 256, (9, 13, 3)).astype(np.uint8) for s in range(3)
    ]
    streams = [causal.encode(img, planes)[0] for img in images]
    damaged = streams[1][:-4]
    out = causal.decode_many([streams[0], damaged, streams[2], b"\0\0\0", streams[3]], 9, 13, planes)
    assert np.array_equal(out[0], images[0]) and np.array_equal(out[2], images[2]) and np.array_equal(out[4], images[3])
    assert isinstance(out[1], FormatError) or not np.array_equal(out[1], images[1])  # never the image
    assert isinstance(out[3], FormatError) and "multiple of 4" in str(out[3])
    assert all(isinstance(e, FormatError) for e in causal.decode_many(streams, 200, 200, planes))


def test_the_encoders_check_with_the_kept_intervals_decodes_as_the_decoder_and_fails_otherwise():
    img = _photo(11, 17)
    planes = tiny_planes(2)
    data, _, kept = causal.encode(img, planes, keep=True)
    assert causal.encode(img, planes).kept is None and [len(m) for m in kept] == [3 * 11 * 17] * 3
    assert np.array_equal(causal.replay(data, 11, 17, kept), img)
    assert np.array_equal(causal.replay(data, 11, 17, kept), causal.decode(data, 11, 17, planes))
    # Intervals other than the stream's (of a network that is not the decoder's) are refused.
    other = causal.encode(img, tiny_planes(3), keep=True).kept
    with pytest.raises(FormatError, match="does not decode to the image"):
        causal.replay(data, 11, 17, other)
    # The same symbols on top of another stream: they follow, and the words below are left.
    starts, freqs, _ = kept
    io = rans.sink(len(starts))
    io[1][:], io[2][:], io[0][1] = starts, freqs, len(starts)
    on_top = rans.finish(io, np.frombuffer(data, "<u4")).astype("<u4").tobytes()
    with pytest.raises(FormatError, match="data left"):
        causal.replay(on_top, 11, 17, kept)


def test_the_codec_verifies_a_thumbnail_with_what_the_causal_model_kept(monkeypatch):
    img = np.asarray(Image.open(THUMB).convert("RGB"))
    codec = Codec.load()
    kept = codec.encode_many([img], coder="causal", keep=True)[0]
    assert kept.replay is not None and kept.data == codec.encode(img, coder="causal").data
    monkeypatch.setattr(codec, "decode_many", lambda datas, *a: [NfcError("decoded")] * len(datas))
    assert np.array_equal(codec.verify_many([kept])[0], img)  # by its replay: it is not decoded
    kept.data = kept.data[:-8] + bytes(8)
    assert isinstance(codec.verify_many([kept])[0], NfcError)


def test_the_shipped_model_codes_a_thumbnail_smaller_than_raw_and_the_codec_keeps_its_file():
    img = np.asarray(Image.open(THUMB).convert("RGB"))
    data, bits, _ = causal.encode(img)
    assert 8 * len(data) < 6 * img.size and abs(8 * len(data) - bits) < 64
    codec = Codec.load()
    res = codec.encode(img, coder="causal")
    h = unpack(res.data)[0]
    assert (res.coder, h.kind, h.model_free) == ("causal", "causal", True)
    assert np.array_equal(decode(res.data), img)
    rgba = np.dstack([img, np.arange(img.size // 3, dtype=np.uint8).reshape(img.shape[:2])])
    assert np.array_equal(decode(codec.encode(rgba, coder="causal").data), rgba)
    auto = codec.encode(img)
    assert len(auto.data) <= len(res.data)


def test_the_causal_coder_refuses_large_images_and_forged_sizes():
    codec = Codec.load()
    with pytest.raises(NfcError, match="grey images of at most 16384 pixels .* not this grey 128x129"):
        codec.encode(np.zeros((129, 128), np.uint8), coder="causal")
    with pytest.raises(NfcError, match="grey images of at most 16384 pixels .* not this colour 128x129"):
        codec.encode(np.zeros((129, 128, 3), np.uint8), coder="causal")
    with pytest.raises(FormatError, match="at most"):
        causal.decode(b"\0" * 8, 1000, 1000)


def test_thin_strips_are_left_to_the_other_models_but_old_strip_files_decode():
    """A 2x4000 strip has 4002 wavefronts, a network run each: decoding would take 10 s or more."""
    assert causal.fits(128, 128) and causal.fits(64, 256) and causal.fits(256, 64)
    assert not causal.fits(2, 4000) and not causal.fits(4000, 2) and not causal.fits(129, 128)
    strip = np.concatenate([_photo(2, 128)] * 32, axis=1)[:, :4000].copy()  # 2x4000
    codec = Codec.load()
    with pytest.raises(NfcError, match="thin strips, not this colour 4000x2"):
        codec.encode(strip, coder="causal")
    assert codec.encode(strip).coder != "causal"
    small = strip[:, :300]  # as 0.9 could write a strip: the payload alone, then the file
    payload = causal.encode(small).data
    assert np.array_equal(causal.decode(payload, 2, 300), small)


def test_a_corrupted_payload_fails_loudly():
    img = _photo(24, 24)
    data = bytearray(Codec.load().encode(img, coder="causal").data)
    data[-9] ^= 0x21
    with pytest.raises(NfcError):
        decode(bytes(data))


def test_the_causal_flag_is_read_from_version_10_only_and_never_beside_the_jpeg_one():
    head = Header("", b"", 70, 33, "RGB", 0, 0, 0xDEADBEEF, device="any", kind="causal")
    data = bytearray(pack(head, [b"abcdefgh"]))
    h = unpack(bytes(data))[0]
    assert (h.kind, h.oriented) == ("causal", False)

    for version, flags in [(9, data[4]), (10, data[4] | 0x08), (10, data[4] & ~0x30), (22, data[4] & ~0x30)]:
        with pytest.raises(FormatError, match="model-free file cannot have"):
            unpack(reheaded(data, version, flags))
    assert unpack(reheaded(data, causal.GREY, data[4] & ~0x30))[0].mode == "L"  # grey from version 23


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_encode_and_decode_in_separate_processes_with_other_thread_counts(tmp_path, mode):
    src = tmp_path / "thumb.png"
    Image.open(THUMB).convert(mode).save(src)
    data, back = code_apart(src, tmp_path, "causal")
    assert (unpack(data)[0].kind, unpack(data)[0].mode) == ("causal", mode)
    assert np.array_equal(back, np.asarray(Image.open(src)))


@pytest.mark.parametrize("cut", [1, 4, 100])
def test_a_causal_file_cut_short_fails_saying_it_may_be(cut):
    data = Codec.load().encode(_photo(24, 20), coder="causal").data
    assert unpack(data)[0].version >= LEAN  # no payload size: the payload's decode finds the cut
    with pytest.raises(NfcError, match="truncated or corrupted|checksum"):
        decode(data[:-cut])
    # And decoded together with another, as a folder is.
    files = [unpack(data[:-cut]), unpack(data)]
    cut_short, whole = decode_model_free_many(files)
    assert isinstance(cut_short, NfcError) and re.search("truncated or corrupted|checksum", str(cut_short))
    assert np.array_equal(whole, decode(data))


def test_each_version_decodes_with_its_own_network():
    img = _photo(24, 20)
    data = Codec.load().encode(img, coder="causal").data
    h = unpack(data)[0]
    assert (h.kind, h.version) == ("causal", causal.NEWEST) == ("causal", 23)
    assert np.array_equal(decode(data), img)
    # The same payload read as version 10's, under the other network, or as version 16's (the
    # same network, its output layer untuned), fails loudly.
    for version in (10, 16):
        as_old = reheaded(data, version, data[4])
        assert unpack(as_old)[0].version == version
        with pytest.raises(NfcError, match="checksum|corrupted"):
            decode(as_old)
    for version in (10, 16):
        old = causal.encode(img, version=version).data
        assert old != causal.encode(img).data
        assert np.array_equal(causal.decode(old, 24, 20, version=version), img)
        assert np.array_equal(causal.decode_many([old], 24, 20, version=version)[0], img)


def test_a_folder_decodes_files_of_three_versions_together():
    from nfcompress.coders.causal import CausalCoder

    img = _photo(16, 16)
    new = Codec.load().encode(img, coder="causal").data
    olds = []
    for version in (10, 16):
        repacked = pack(unpack(new)[0], [causal.encode(img, version=version).data])
        olds.append(reheaded(repacked, version, repacked[4]))
    # Version 21's payload is that of versions 22 and 23 (which take grey images too), in a file
    # that gives its size.
    olds += [reheaded(new, 21), reheaded(new, 22)]
    payloads = [unpack(bytes(d))[:2] for d in (new, *olds, new)]
    assert [h.version for h, _ in payloads] == [23, 10, 16, 21, 22, 23]
    assert all(np.array_equal(x, img) for x in CausalCoder().decode_many(payloads))


@pytest.mark.parametrize("where", ["shipped", "path"])
def test_damaged_or_replaced_causal_weights_are_refused(tmp_path, monkeypatch, where):
    name = causal.NEWEST_NETWORK[0]
    weights = bytearray((SHIPPED / f"{name}.safetensors").read_bytes())
    weights[-9] ^= 1  # one weight off by a little: it would still load, and code other files
    (tmp_path / f"{name}.safetensors").write_bytes(bytes(weights))
    (tmp_path / f"{name}.json").write_bytes((SHIPPED / f"{name}.json").read_bytes())
    if where == "shipped":
        monkeypatch.setattr(causal, "shipped_dir", lambda: tmp_path)
        with pytest.raises(NfcError, match="does not match its sha256"):
            causal.load()
    else:
        with pytest.raises(NfcError, match="does not match its sha256"):
            causal.load(tmp_path / f"{name}.safetensors")


def test_mixture_weights_are_normalised_by_one_ordered_sum(monkeypatch):
    """numpy's sum picks its own order (pairwise, SIMD lanes by CPU): the normaliser must be the
    column-by-column sum, the same float on every machine."""
    from nfcompress.coding.primitives import ordered_sum

    rng = np.random.default_rng(3)
    seen = []
    monkeypatch.setattr(causal, "ordered_sum", lambda e: seen.append(e.shape) or ordered_sum(e))
    o = rng.integers(-(2**20), 2**20, (7, 9)).astype(np.float64)
    causal.mixture_rows(o, np.full(7, 128 << causal.FRAC_BITS))
    assert seen == [(7, 3)]


def test_auto_leaves_out_the_linear_model_at_effort_1_on_the_smallest_images_the_causal_model_codes(monkeypatch):
    from nfcompress import policy

    fits = []
    real = policy.linear_model.fitted
    monkeypatch.setattr(policy.linear_model, "fitted", lambda *a, **k: fits.append(a[0].shape) or real(*a, **k))
    small = np.asarray(Image.fromarray(_photo(128, 128)).resize((32, 32), Image.Resampling.BOX))
    wider = np.asarray(Image.fromarray(_photo(128, 128)).resize((33, 32), Image.Resampling.BOX))
    grey = np.ascontiguousarray(small[..., 1:2])  # grey as colour: the causal model codes it
    out = policy.encode_auto([small, wider, grey], None, 1, lambda i, p: len(p.chunks[0]))
    assert out[0].kind == out[2].kind == "causal" and fits == [(32, 33, 3)]
    policy.encode_auto([small], None, policy.FLOW_FROM_EFFORT, lambda i, p: len(p.chunks[0]))
    assert fits[1:] == [(32, 32, 3)]


def test_a_file_of_a_version_between_two_networks_decodes_with_the_earlier_one():
    from nfcompress.model_files import pinned

    assert [pinned({10: "a", 15: "b"}, v) for v in (9, 10, 14, 15, 16)] == [None, "a", "a", "b", "b"]
    img = _photo(24, 20)
    old = causal.encode(img, version=10).data
    data = Codec.load().encode(img, coder="causal").data
    as_12 = reheaded(pack(unpack(data)[0], [old]), 12, data[4])
    assert np.array_equal(decode(as_12), img)
    adaptive = Codec.load().encode(img, coder="adaptive").data
    second = adaptive_model.encode(img, version=14).data  # the version 14 network and layout
    as_15 = reheaded(pack(unpack(adaptive)[0], [second]), 15, adaptive[4])
    assert unpack(as_15)[0].version == 15 and np.array_equal(decode(as_15), img)
