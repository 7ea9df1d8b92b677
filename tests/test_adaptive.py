"""The adaptive model: it codes exactly under any weights, over the very predictions the linear
model codes with, in files of their own kind, with the shipped weights its format names."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import code_apart, reheaded, tiny_planes
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nfcompress import decode, encode
from nfcompress.codec import Codec
from nfcompress.coders.adaptive import model as adaptive
from nfcompress.coders.base import Payload
from nfcompress.coders.causal import model as causal
from nfcompress.coders.linear import model as linear
from nfcompress.coding.primitives import wavefronts
from nfcompress.container import Header, pack, unpack
from nfcompress.errors import FormatError, NfcError
from nfcompress.weights import shipped_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHIPPED = shipped_dir()


def _photo(h: int, w: int, grey: bool = False) -> np.ndarray:
    img = np.asarray(Image.open(EXAMPLES / "pizza-128.png").convert("L" if grey else "RGB"))[:h, :w]
    return np.ascontiguousarray(img[..., None] if grey else img)


def _residual_networks(seed: int, hidden: int = 8, mixtures: int = 2, version: int = max(adaptive.RINGS)) -> list:
    """Random small networks that read the fitted residuals too (the inputs of the network of
    `version`, 18 or later)."""
    rings = adaptive.RINGS[version]
    planes = [
        dataclasses.replace(pw, first=pw.first[: adaptive.inputs(k, rings)])
        for k, pw in enumerate(tiny_planes(seed, adaptive.EXTRA + adaptive.residual_count(2, rings), hidden, mixtures))
    ]
    assert adaptive.rings_of(planes) is rings and adaptive.rings_of(tiny_planes(seed, adaptive.EXTRA)) == ()
    return planes


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 19),
    w=st.integers(1, 19),
    seed=st.integers(0, 3),
    noise=st.booleans(),
    grey=st.booleans(),
    residuals=st.sampled_from([None, *adaptive.RINGS]),
    tuned=st.booleans(),
)
def test_any_image_round_trips_under_any_weights(h, w, seed, noise, grey, residuals, tuned):
    img = _photo(h, w, grey)
    if noise:
        img = np.random.default_rng(seed).integers(0, 256, img.shape).astype(np.uint8)
    planes = _residual_networks(seed, version=residuals) if residuals else tiny_planes(seed, adaptive.EXTRA)
    version = adaptive.ONLINE if tuned else adaptive.ONLINE - 1
    data, bits, side, _ = adaptive.encode(img, planes, version=version)
    assert np.array_equal(adaptive.decode(data, h, w, img.shape[2], planes, version=version), img)
    assert 8 * len(data) >= bits.sum() + side - 64


def test_a_larger_photo_round_trips_and_the_fit_is_shared_with_the_linear_model():
    img = _photo(90, 128)
    fit = linear.fitted(img)
    assert linear.encode(img, fit=fit)[0] == linear.encode(img)[0]
    planes = tiny_planes(5, adaptive.EXTRA, hidden=16, mixtures=3)
    data = adaptive.encode(img, planes, fit)[0]
    assert data == adaptive.encode(img, planes)[0]
    assert np.array_equal(adaptive.decode(data, 90, 128, 3, planes), img)


def test_the_extra_features_are_the_fitted_offset_its_scale_and_the_size_within_the_exact_range():
    """The causal features' own test is in test_causal; the extras read what `linear.decode_planes`
    gives of a pixel before it is decoded (its prediction and scale code) and the image size."""
    p = np.array([0, 5 << 12, 255 << 12, 100 << 12], np.int64)
    base = np.array([0, 200, 0, 100], np.int64)
    e = adaptive.extras(p, np.array([0, 128, 255, 7]), base, 1 << 18)
    assert e.tolist() == [
        [0, -128, 48],
        [-adaptive.OFFSET_LIMIT, 0, 48],
        [adaptive.OFFSET_LIMIT, 127, 48],
        [0, -121, 48],
    ]
    assert np.abs(e).max() < causal.FEATURE_LIMIT


def _ring_features(res: np.ndarray, k: int, y: int, x: int, rings: tuple) -> list[int]:
    """What `put_residuals` should give plane k's sub-pixel at row y, column x, spelled out."""
    pad, (h, w) = adaptive.RES_PAD, (res.shape[1] - 2 * adaptive.RES_PAD, res.shape[2] - 2 * adaptive.RES_PAD)
    at = lambda q, di, dj: int(res[q, y + pad + di, x + pad + dj])  # noqa: E731
    out: list[int] = []
    for ring in rings:
        out += [at(k, di, dj) for di, dj in ring.own]
        out += [at(q, di, dj) for q in range(k) for di, dj in ring.across]
        if ring.windows:
            for q in [k, *range(k)]:
                cells = adaptive.WINDOW_OWN if q == k else adaptive.WINDOW_ACROSS
                inside = [at(q, di, dj) for di, dj in cells if 0 <= y + di < h and 0 <= x + dj < w]
                n = max(len(inside), 1)
                out += [sum(abs(v) for v in inside) // n, sum(inside) // n]
    return out


def test_a_decoders_residuals_settled_a_wavefront_at_a_time_are_the_encoders_planes():
    rng = np.random.default_rng(3)
    h, w = 7, 12
    x = rng.integers(0, 256, (2, h, w))
    preds = [rng.integers(-(40 << 12), 300 << 12, h * w) for _ in range(2)]
    res = np.zeros((2, h + 2 * adaptive.RES_PAD, w + 2 * adaptive.RES_PAD), np.int16)
    for k in range(2):
        for i, j in wavefronts(h, w, 3):
            adaptive.settle_residuals(res, k, i, j, x[k, i, j], preds[k][i * w + j])
    expected = adaptive.residual_planes(x, preds)
    assert np.abs(expected).max() == adaptive.OFFSET_LIMIT and np.array_equal(res, expected)
    # The format's residual, spelled out (docs/format.md): clip(16 v - (p >> 8), -1000, 1000), 0 outside.
    spelled = np.clip(16 * x - (np.stack(preds).reshape(2, h, w) >> 8), -1000, 1000)
    pad = adaptive.RES_PAD
    assert np.array_equal(expected[:, pad:-pad, pad:-pad], spelled) and expected.sum() == spelled.sum()


@pytest.mark.parametrize("version", sorted(adaptive.RINGS))
def test_the_residual_features_read_only_sub_pixels_decoded_before_in_the_decoders_order(version):
    """Each plane's residual features at a sub-pixel are the same whatever the residuals of its
    own plane from its wavefront on and of the later planes (the decoder has not made them yet),
    and they are `residual_planes` at each ring's places and its windows' floored means."""
    rings = adaptive.RINGS[version]
    rng = np.random.default_rng(2)
    h, w = 9, 11
    x = rng.integers(0, 256, (3, h, w))
    preds = [rng.integers(-(40 << 12), 300 << 12, h * w) for _ in range(3)]
    res = adaptive.residual_planes(x, preds)
    pad = adaptive.RES_PAD
    assert np.abs(res).max() == adaptive.OFFSET_LIMIT and not res[:, :pad].any() and not res[:, :, -pad:].any()
    slope = adaptive.slope_of(rings)
    assert all(slope * di + dj < 0 for ring in rings for di, dj in ring.own) and all(
        2 * di + dj < 0 for di, dj in adaptive.WINDOW_OWN
    )
    i, j = (a.ravel() for a in np.mgrid[0:h, 0:w])
    for k in range(3):
        f = np.zeros((h * w, adaptive.residual_count(k, rings)), np.int64)
        adaptive.put_residuals(f, res, k, i, j, rings)
        for n in range(h * w):
            assert f[n].tolist() == _ring_features(res, k, i[n], j[n], rings)
            later = res.copy()
            t = slope * i[n] + j[n]
            front = slope * np.arange(h)[:, None] + np.arange(w)[None, :] >= t
            later[k, pad : pad + h, pad : pad + w][front] = rng.integers(-999, 999, front.sum())
            later[k + 1 :] = rng.integers(-999, 999, later[k + 1 :].shape)
            g = np.zeros((1, adaptive.residual_count(k, rings)), np.int64)
            adaptive.put_residuals(g, later, k, i[n : n + 1], j[n : n + 1], rings)
            assert np.array_equal(g[0], f[n])


def test_mixture_rows_sum_to_the_coders_total_and_bound_what_a_payload_can_decode_to():
    rng = np.random.default_rng(1)
    o = np.round(rng.normal(0, 1, (500, 9)) * 2.0**causal.OUT_BITS * rng.choice([0.01, 1, 30], (500, 9)))
    rows = causal.mixture_rows(o, rng.integers(-200 << 12, 460 << 12, 500))
    assert np.all(rows.sum(1) == causal.ROW)
    top = (rows.max() + 1) / 2.0**causal.PRECISION  # the likeliest a value can be
    assert -np.log2(top) >= linear.MIN_BITS
    with pytest.raises(FormatError, match="cannot hold"):
        adaptive.decode(b"\0" * 8, 1000, 1000, 3, tiny_planes(0, adaptive.EXTRA))


def test_the_compiled_mixture_parts_are_those_of_the_vector_form_bit_for_bit():
    from nfcompress.coders.causal import symbols

    rng = np.random.default_rng(5)
    n = 50000
    # Outputs from tiny to far past every clip: predictions off the ends, scale codes beyond 0..255,
    # one component's weight all of it, or several equal.
    o = np.round(rng.normal(0, 1, (n, 9)) * 2.0**causal.OUT_BITS * rng.choice([0.0, 0.001, 1, 30, 1000], (n, 9)))
    centre = rng.integers(-200 << 12, 460 << 12, n)
    for mine, theirs in zip(symbols.parts(o, centre), causal.mixture_parts(o, centre)):
        assert mine.dtype == np.int64 and np.array_equal(mine, theirs)


def test_the_compiled_coder_writes_the_weights_and_the_stream_of_mixture_rows():
    import constriction

    from nfcompress.coders.causal import symbols
    from nfcompress.coding import rans

    rng = np.random.default_rng(4)
    n = 2000
    o = np.round(rng.normal(0, 1, (n, 9)) * 2.0**causal.OUT_BITS * rng.choice([0.01, 1, 30], (n, 9)))
    # Narrow components (scale codes near 0, where `_weights` weighs only the values they reach),
    # near the ends and far past them.
    narrow = rng.random(n) < 0.5
    o[narrow, 3:6] = rng.uniform(-6, -2, (narrow.sum(), 3)) * 2.0**causal.OUT_BITS
    centre = rng.integers(-200 << 12, 460 << 12, n)
    ends = rng.random(n) < 0.3
    centre[ends] = (rng.choice([0, 255], ends.sum()) << 12) + rng.integers(-3 << 12, 3 << 12, ends.sum())
    rows = causal.mixture_rows(o, centre)
    parts = causal.mixture_parts(o, centre)
    w = np.empty(256, np.int64)
    for k in range(len(o)):
        symbols._weights(symbols.table(), *parts, k, w)
        assert np.array_equal(w, rows[k])
    x = rng.integers(0, 256, len(o))
    io = rans.sink(len(o))
    freq = symbols.record(symbols.table(), *parts, x, io)
    assert np.array_equal(freq, rows[np.arange(len(o)), x] + 1)
    theirs = constriction.stream.stack.AnsCoder()
    theirs.encode_reverse(x.astype(np.int32), constriction.stream.model.Categorical(perfect=False), rows)
    words = rans.finish(io, rans.NOTHING)
    assert np.array_equal(words, theirs.get_compressed())
    assert np.array_equal(symbols.decode(symbols.table(), *parts, rans.source(words)), x)


def test_the_adaptive_flag_is_read_from_version_13_only_and_stands_alone():
    head = Header("", b"", 70, 33, "RGB", 0, 0, 0xDEADBEEF, device="any", kind="adaptive")
    data = bytearray(pack(head, [b"abcdefgh"]))
    h = unpack(bytes(data))[0]
    assert (h.kind, h.version, h.model_name) == ("adaptive", adaptive.NEWEST, "")
    grey = unpack(pack(Header("", b"", 7, 3, "L", 0, 0, 1, device="any", kind="adaptive"), [b"abcd"]))[0]
    assert (grey.kind, grey.mode) == ("adaptive", "L")

    assert unpack(reheaded(data, 13, data[4]))[0].kind == "adaptive"  # version 13's network
    for version, flags in [(12, data[4]), (13, data[4] | 0x08), (14, data[4] | 0x80)]:
        with pytest.raises(FormatError, match="model-free file cannot have"):
            unpack(reheaded(data, version, flags))


def test_the_shipped_model_codes_photos_in_colour_grey_and_alpha_and_auto_keeps_the_smallest():
    img = _photo(80, 96)
    codec = Codec.load()
    res = codec.encode(img, coder="adaptive")
    h = unpack(res.data)[0]
    assert (res.coder, h.kind, h.model_free, h.version) == ("adaptive", "adaptive", True, adaptive.NEWEST)
    assert np.array_equal(decode(res.data), img)
    assert len(codec.encode(img).data) <= len(res.data)
    clean = np.asarray(Image.fromarray(_photo(128, 128)).resize((64, 64), Image.Resampling.BOX))
    assert len(adaptive.encode(clean)[0]) < len(linear.encode(clean)[0])  # the network earns its place here
    grey = _photo(40, 50, grey=True)[..., 0]
    assert np.array_equal(decode(codec.encode(grey, coder="adaptive").data), grey)
    rgba = np.dstack([img, np.arange(img.size // 3, dtype=np.uint8).reshape(img.shape[:2])])
    assert np.array_equal(decode(codec.encode(rgba, coder="adaptive").data), rgba)


def test_channels_fitted_and_coded_on_threads_give_the_same_model_and_bytes():
    img = _photo(128, 128)
    assert 128 * 128 >= linear.THREADS_FROM
    alone, threaded = linear.fitted(img), linear.fitted(img, threads=3)
    assert alone.model.blocks == threaded.model.blocks
    for part in ("weights", "scales", "spikes", "feedback"):
        assert all(np.array_equal(x, y) for x, y in zip(getattr(alone.model, part), getattr(threaded.model, part)))
    assert all(np.array_equal(alone.predictions(c), threaded.predictions(c)) for c in range(3))
    planes = _residual_networks(6, hidden=16, mixtures=3)
    one, two = (adaptive.encode(img, planes, alone, keep=True, threads=t) for t in (1, 2))
    assert one.data == two.data and np.array_equal(one.pixel_bits, two.pixel_bits)
    assert all(np.array_equal(x, y) for a, b in zip(one.kept.intervals, two.kept.intervals) for x, y in zip(a, b))


def test_the_encoders_check_with_the_kept_intervals_decodes_as_the_decoder_and_catches_a_disagreement():
    img = _photo(40, 56)
    planes = _residual_networks(3, hidden=16, mixtures=3)
    data, _, _, kept = adaptive.encode(img, planes, keep=True)
    assert np.array_equal(adaptive.decode(data, 40, 56, 3, planes, kept=kept), img)
    assert [len(v) for _, _, v in kept.intervals] == [40 * 56] * 3
    assert adaptive.encode(img, planes).kept is None
    # An encoder whose fitted prediction differs from the decoder's at one pixel of the last channel.
    wrong = kept.predictions[2].copy()
    wrong[17 * 56 + 30] += 1
    with pytest.raises(FormatError, match="predictions differ"):
        adaptive.decode(data, 40, 56, 3, planes, kept=kept._replace(predictions=[*kept.predictions[:2], wrong]))
    # Intervals other than the stream's (of a network that is not the decoder's) are refused.
    other = adaptive.encode(img, _residual_networks(4, hidden=16, mixtures=3), keep=True).kept
    with pytest.raises(FormatError, match="does not decode to the image"):
        adaptive.decode(data, 40, 56, 3, planes, kept=other)
    # Where the kept values are not the image's, the decoder's linear model reads other neighbours.
    starts, freqs, values = kept.intervals[1]
    values = values.copy()
    values[100] ^= 1
    wrong = [kept.intervals[0], (starts, freqs, values), kept.intervals[2]]
    with pytest.raises(FormatError, match="predictions differ"):
        adaptive.decode(data, 40, 56, 3, planes, kept=kept._replace(intervals=wrong))


def test_the_codec_verifies_its_files_with_what_the_adaptive_model_kept_and_keeps_it_only_when_asked(monkeypatch):
    img = _photo(48, 48)
    codec = Codec.load()
    kept, plain = codec.encode_many([img], coder="adaptive", keep=True)[0], codec.encode(img, coder="adaptive")
    assert kept.data == plain.data and kept.replay is not None and plain.replay is None
    assert all(np.array_equal(out, img) for out in codec.verify_many([kept, plain]))
    # A kept file is checked by its replay alone, never by decoding it.
    monkeypatch.setattr(codec, "decode_many", lambda datas, *a: [NfcError("decoded")] * len(datas))
    assert np.array_equal(codec.verify_many([kept])[0], img)
    damaged = bytearray(kept.data)
    damaged[-9] ^= 0x21
    kept.data = bytes(damaged)
    assert isinstance(codec.verify_many([kept])[0], NfcError) and "decoded" not in str(codec.verify_many([kept])[0])


def test_a_corrupted_payload_fails_loudly():
    data = bytearray(Codec.load().encode(_photo(24, 24), coder="adaptive").data)
    data[-9] ^= 0x21
    with pytest.raises(NfcError):
        decode(bytes(data))


def test_encode_and_decode_in_separate_processes_with_other_thread_counts(tmp_path):
    src = tmp_path / "photo.png"
    Image.fromarray(_photo(48, 64)).save(src)
    data, back = code_apart(src, tmp_path, "adaptive")
    assert unpack(data)[0].kind == "adaptive"
    assert np.array_equal(back, _photo(48, 64))


def test_each_version_decodes_with_its_own_network():
    img = _photo(40, 48)
    data = encode(img, coder="adaptive")
    assert unpack(data)[0].version == adaptive.NEWEST == 22
    assert np.array_equal(decode(data), img)
    # The same payload read as an earlier version's, under another network or version 20's
    # (the same network, its output layer untuned), fails loudly.
    for old in (13, 17, 20):
        as_old = reheaded(data, old, data[4])
        assert unpack(as_old)[0].version == old
        with pytest.raises(NfcError, match="checksum|corrupted"):
            decode(as_old)
    # Each version's network and side information; from version 18 the network reads the residuals
    # (one ring), from version 19 two: each shipped network's inputs are its version's.
    for old in (13, 17, 20):
        stream = adaptive.encode(img, version=old)[0]
        assert np.array_equal(adaptive.decode(stream, 40, 48, 3, version=old), img)
    assert all(adaptive.rings_of(adaptive.load(version=v)) is adaptive.RINGS.get(v, ()) for v in adaptive.MODELS)


def test_damaged_or_replaced_adaptive_weights_are_refused(tmp_path, monkeypatch):
    name = adaptive.NEWEST_NETWORK[0]
    weights = bytearray((SHIPPED / f"{name}.safetensors").read_bytes())
    weights[-9] ^= 1  # one weight off by a little: it would still load, and code other files
    (tmp_path / f"{name}.safetensors").write_bytes(bytes(weights))
    monkeypatch.setattr(adaptive, "shipped_dir", lambda: tmp_path)
    with pytest.raises(NfcError, match="adaptive model .* does not match its sha256"):
        adaptive.load()


def test_progress_runs_once_to_the_end_over_the_linear_and_the_adaptive_model_and_in_decoding():
    from nfcompress import policy

    seen = []
    clean = np.asarray(Image.fromarray(_photo(128, 128)).resize((64, 64), Image.Resampling.BOX))
    policy.encode_linear_or_jpeg(clean, lambda done, total: seen.append((done, total)), adaptive_too=True)
    assert len({t for _, t in seen}) == 1 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[:3] == [(1, 9), (2, 9), (3, 9)]  # each channel's fit, the first half of the linear model's part
    assert seen[-1][0] == seen[-1][1] and sum(d == t for d, t in seen) == 1
    seen.clear()
    data = adaptive.encode(clean)[0]
    adaptive.decode(data, 64, 64, 3, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


def _count_adaptive_encodes(monkeypatch) -> list:
    """A list that gets an item each time auto's adaptive model encodes."""
    from nfcompress import policy

    tried = []
    adaptive_coder = policy.MODEL_FREE["adaptive"]
    monkeypatch.setattr(
        adaptive_coder,
        "encode",
        lambda *a, **k: tried.append(1) or type(adaptive_coder).encode(adaptive_coder, *a, **k),
    )
    return tried


def test_auto_leaves_out_the_adaptive_model_where_the_linear_model_is_far_over_the_causal_one(monkeypatch):
    from nfcompress import policy
    from nfcompress.coders.linear import model as linear

    clean = np.asarray(Image.fromarray(_photo(96, 96)).resize((48, 48), Image.Resampling.BOX))
    tried = _count_adaptive_encodes(monkeypatch)
    guess = linear.estimated_bits(clean, linear.fitted(clean)) / 8
    near = Payload("causal", [bytes(int(guess / policy.ADAPTIVE_REACH) + 1)], 0.0)
    far = Payload("causal", [bytes(int(guess / policy.ADAPTIVE_REACH))], 0.0)
    policy.encode_linear_or_jpeg(clean, adaptive_too=True, rival=near)
    assert tried == [1]
    seen = []
    out = policy.encode_linear_or_jpeg(clean, lambda d, t: seen.append((d, t)), adaptive_too=True, rival=far)
    assert tried == [1] and out is None  # the causal model's far smaller payload is kept
    assert len({t for _, t in seen}) == 1 and seen[-1][0] == seen[-1][1] and sum(d == t for d, t in seen) == 1


def test_auto_leaves_out_the_adaptive_model_on_the_causal_models_smallest_images(monkeypatch):
    from nfcompress import policy

    clean = np.asarray(Image.fromarray(_photo(128, 128)).resize((32, 32), Image.Resampling.BOX))
    tried = _count_adaptive_encodes(monkeypatch)
    rival = Payload("causal", [bytes(1 << 20)], 0.0)  # far larger than the linear model's
    assert policy.encode_linear_or_jpeg(clean, adaptive_too=True, rival=rival).kind == "linear"
    assert tried == []
    wider = np.asarray(Image.fromarray(_photo(128, 128)).resize((33, 32), Image.Resampling.BOX))
    policy.encode_linear_or_jpeg(wider, adaptive_too=True, rival=rival)
    assert tried == [1]
    # A grey one, which the causal model does not code (no rival), is tried.
    policy.encode_linear_or_jpeg(np.ascontiguousarray(clean[..., 1:2]), adaptive_too=True)
    assert tried == [1, 1]


def test_the_linear_models_payload_is_made_only_where_its_estimate_is_near_the_smallest(monkeypatch):
    from nfcompress import policy
    from nfcompress.coders.linear import model as linear

    clean = np.asarray(Image.fromarray(_photo(128, 128)).resize((32, 32), Image.Resampling.BOX))
    payload = policy.MODEL_FREE["linear"].encode(clean)
    guess = linear.estimated_bits(clean, linear.fitted(clean)) / 8
    assert abs(guess / len(payload.chunks[0]) - 1) < 0.02
    made = []
    coder = policy.MODEL_FREE["linear"]
    monkeypatch.setattr(coder, "encode", lambda *a, **k: made.append(1) or type(coder).encode(coder, *a, **k))
    close = Payload("causal", [bytes(int(guess / policy.LINEAR_REACH) + 1)], 0.0)
    assert policy.encode_linear_or_jpeg(clean, rival=close).kind == "linear" and made == [1]
    far = Payload("causal", [bytes(int(guess / policy.LINEAR_REACH))], 0.0)
    assert policy.encode_linear_or_jpeg(clean, rival=far) is None and made == [1]
    assert policy.encode_linear_or_jpeg(clean).kind == "linear" and made == [1, 1]  # nothing to weigh it against


def test_thin_strips_are_left_to_the_linear_model_and_refused_by_the_decoder():
    """Found by the fuzz: a 497-byte file claiming a 65536x13 image took 190 s to refuse, a
    network run per wavefront (65,560 of them) and channel."""
    assert adaptive.fits(4096, 8192) and adaptive.fits(1, adaptive.MAX_FRONTS)
    assert not adaptive.fits(13, 65536) and not adaptive.fits(65536, 13)
    assert not adaptive.fits(1, adaptive.MAX_FRONTS + 1)
    strip = np.tile(_photo(3, 128), (1, 130, 1))  # 3x16640: 16,644 wavefronts
    codec = Codec.load()
    with pytest.raises(NfcError, match="at most 16384 wavefronts .* not this 16640x3 strip"):
        codec.encode(strip, coder="adaptive")
    assert codec.encode(strip).coder != "adaptive"
    with pytest.raises(FormatError, match="no 65536x13 image"):
        adaptive.decode(b"\0" * 4096, 13, 65536, 3, tiny_planes(0, adaptive.EXTRA))


def test_training_starts_from_the_causal_network_exactly():
    """`causal.dequantize` undoes `quantize`; the adaptive network starts as the causal one on its
    features, with zero weights for the extras and zero mean outputs."""
    from nfcompress.coders.adaptive.train import AdaptiveNet, start_from_causal

    shipped = causal.load()
    net = AdaptiveNet()
    start_from_causal(net, shipped)
    state = {k: v.double().numpy() for k, v in net.state_dict().items()}
    for k, pw in enumerate(shipped):
        back = causal.quantize({f"planes.{k}.{n}": a for n, a in causal.dequantize(pw).items()}, k)
        assert all(np.array_equal(a, b) for a, b in zip(vars(back).values(), vars(pw).values()))
        started = causal.quantize(state, k)
        n = causal.feature_count(k)
        assert np.array_equal(started.first[:n], pw.first) and not started.first[n:].any()
        assert not started.out[:, : net.mixtures].any() and np.array_equal(started.second, pw.second)


@pytest.mark.parametrize("version", [17, 18, 19])
def test_tuning_an_older_network_starts_from_it_with_zero_weights_for_the_residuals_it_did_not_read(version):
    from nfcompress.coders.adaptive.train import shipped_net

    old = adaptive.load(version=version)
    state = {k: v.double().numpy() for k, v in shipped_net(version).state_dict().items()}
    for k, pw in enumerate(old):
        started = causal.quantize(state, k)
        n = pw.first.shape[0]
        assert n == causal.feature_count(k) + adaptive.EXTRA + adaptive.residual_count(k, adaptive.rings_of(old))
        assert started.first.shape[0] == adaptive.inputs(k) > n
        assert np.array_equal(started.first[:n], pw.first) and not started.first[n:].any()
        assert all(np.array_equal(getattr(started, f), getattr(pw, f)) for f in ("second", "out", "out_bias"))


@pytest.mark.parametrize("h, w, grey", [(40, 48, False), (24, 20, True)])
def test_from_version_17_the_side_information_leaves_out_the_spike_shares_the_network_does_not_read(h, w, grey):
    img = _photo(h, w, grey)
    fit = linear.fitted(img)
    shares = linear.SPIKE_BITS * sum(len(s) for s in fit.model.spikes)
    new = adaptive.encode(img, fit=fit)
    old = adaptive.encode(img, fit=fit, version=16)  # with the shares, under version 16's network
    assert adaptive.SPIKELESS == 17 and shares > 0
    assert new.side_bits == old.side_bits - shares and len(new.data) < len(old.data)
    assert np.array_equal(adaptive.decode(new.data, h, w, img.shape[2]), img)
    assert np.array_equal(adaptive.decode(old.data, h, w, img.shape[2], version=16), img)
    # Each payload read under the other layout (and the other network) does not give the image.
    for data, version in ((new.data, 16), (old.data, 17)):
        try:
            wrong = adaptive.decode(data, h, w, img.shape[2], version=version)
        except FormatError:
            continue
        assert not np.array_equal(wrong, img)
