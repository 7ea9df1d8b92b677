import zlib

import numpy as np
import pytest
import torch
from conftest import float_file, photo_like

from nfcompress.codec import Codec
from nfcompress.coders.flow.tiles import count_chunks, plan_tiles
from nfcompress.container import WRITTEN, Header, pack, unpack
from nfcompress.errors import ChecksumError, FormatError, ModelMismatch, NfcError


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 3), (1, 1), (5, 3, 3), (17, 9), (33, 70, 3), (20, 21, 2), (31, 40, 4), (64, 64, 3), (100, 65, 3)],
)
def test_round_trip_is_exact(tiny_codec, shape):
    img = photo_like(shape[0], shape[1], shape[2] if len(shape) == 3 else 1, seed=sum(shape))
    img = img if len(shape) == 3 else img[..., 0]
    img.flat[0], img.flat[-1] = 0, 255
    res = tiny_codec.encode(img)
    out = tiny_codec.decode(res.data)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, img)


def test_image_larger_than_a_tile_uses_several_chunks(tiny_codec):
    img = photo_like(80, 100, 3)
    res = tiny_codec.encode(img)
    _, chunks, _ = unpack(res.data)
    assert len(chunks) == len(plan_tiles(80, 100, 32, 2, 8)) > 2
    assert np.array_equal(tiny_codec.decode(res.data), img)


def test_plan_groups_equal_shapes_and_covers_every_pixel():
    plan = plan_tiles(70, 45, 32, 2, 8)
    covered = np.zeros((70, 45), int)
    for tiles in plan:
        shapes = {(-(-t.h // 8), -(-t.w // 8)) for t in tiles}
        assert len(shapes) == 1 and len(tiles) <= 2
        for t in tiles:
            covered[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    assert (covered == 1).all()


def test_real_size_tracks_ideal(tiny_codec):
    img = photo_like(64, 64, 3, seed=5)
    res = tiny_codec.encode(img)
    assert res.ideal_bits > 0
    assert 8 * len(res.data) <= res.ideal_bits * 1.01 + 64 * 8
    bits, sub = tiny_codec.ideal_bits(img)
    assert sub == img.size and abs(bits - res.ideal_bits) < 1e-6 * bits


def test_other_model_is_refused_by_name(tiny_codec, tiny_models_dir):
    other = Codec.load(str(tiny_models_dir / "other.safetensors"), tile=32, batch=2)
    data = tiny_codec.encode(photo_like(16, 16)).data
    with pytest.raises(ModelMismatch, match="'tiny'"):
        other.decode(data)


def test_corrupted_payload_fails_loudly(tiny_codec):
    img = photo_like(40, 40, 3)
    data = bytearray(tiny_codec.encode(img).data)
    for pos in [len(data) - 3, len(data) // 2 + 20]:
        bad = bytearray(data)
        bad[pos] ^= 0x55
        try:
            out = tiny_codec.decode(bytes(bad))
        except (FormatError, ChecksumError):
            continue
        assert np.array_equal(out, img)


def test_a_payload_ending_in_a_zero_word_is_a_format_error(tiny_codec):
    data = tiny_codec.encode(photo_like(16, 16)).data
    with pytest.raises(FormatError, match="corrupted payload"):
        tiny_codec.decode(data[:-4] + bytes(4))


def test_other_arithmetic_is_named_when_a_file_does_not_decode(tiny_models_dir):
    """Floats that differ (here one prior weight, a few ulps off) fail with a message naming both causes."""
    img = photo_like(40, 40, 3)
    data = float_file(Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2), img)
    other = Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2)
    with torch.no_grad():
        w = next(p for n, p in other.flow.model.named_parameters() if "prior" in n and p.dim() == 4)
        w.mul_(1 + 1e-6)
    with pytest.raises(ChecksumError, match="damaged, or it was coded on a machine whose floating-point arithmetic"):
        other.decode(data)


def test_bad_arrays_are_refused(tiny_codec):
    with pytest.raises(NfcError, match="8-bit"):
        tiny_codec.encode(np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(NfcError):
        tiny_codec.encode(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(NfcError, match="empty"):
        tiny_codec.encode(np.zeros((0, 4, 3), np.uint8))


def test_count_chunks_matches_the_plan():
    for h, w, t, b in [
        (1, 1, 8, 1),
        (70, 45, 32, 2),
        (256, 256, 64, 3),
        (300, 17, 16, 5),
        (64, 64, 64, 4),
        (20, 20, 16, 1),
    ]:
        assert count_chunks(h, w, t, b, 8) == len(plan_tiles(h, w, t, b, 8))


@pytest.mark.parametrize("effort", [1, 2, 3])
def test_every_effort_round_trips_square_and_edge_tiles(tiny_models_dir, effort):
    codec = Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=3, effort=effort, coder="flow")
    img = photo_like(70, 45, 3, seed=effort)
    res = codec.encode(img)
    assert unpack(res.data)[0].oriented == (effort > 1)
    assert np.array_equal(codec.decode(res.data), img)
    bits, _ = codec.ideal_bits(img)
    assert abs(bits - res.ideal_bits) < 1e-6 * bits


def test_more_effort_never_costs_more_than_its_orientation_symbols(tiny_models_dir):
    img = photo_like(64, 96, 3, seed=3)
    ideal = {}
    for effort in (1, 2, 3):
        codec = Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2, effort=effort)
        ideal[effort] = codec.ideal_bits(img)[0]
    tiles = 6
    assert ideal[3] <= ideal[2] + 1e-6 and ideal[2] <= ideal[1] + 3 * tiles + 1e-6
    # The tiny model is not symmetric, so some tile is cheaper turned: effort 3 saves bits.
    assert ideal[3] < ideal[1] + 3 * tiles


def test_unknown_effort_is_refused(tiny_models_dir):
    with pytest.raises(NfcError, match="effort"):
        Codec.load(str(tiny_models_dir / "tiny.safetensors"), effort=0)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _tile_encoder(model, img: np.ndarray, legacy: bool):
    """An Encoder holding the latents of a one-tile image, coded by hand (no orientations)."""
    import torch

    from nfcompress.coders.flow.coder import _tables
    from nfcompress.coders.flow.tiles import padded as _padded
    from nfcompress.coding import Encoder
    from nfcompress.flows import split_params

    m = model.config.multiple
    x = torch.from_numpy(_padded(img, plan_tiles(img.shape[0], img.shape[1], 256, 1, m)[0], m)).float()
    enc = Encoder()
    with torch.no_grad():
        for z, raw in zip(*model.forward_with_params(x)):
            p = split_params(raw, model.config.mixtures)
            enc.push_latents(z.round().to(torch.int64).numpy().ravel(), _tables(p, legacy))
    return enc


def _legacy_payload(codec: Codec, img: np.ndarray) -> bytes:
    """One tile coded as nfcompress 0.2 did: row-major convolutions, no orientation, version 2 tables."""
    import copy

    import torch

    model = copy.deepcopy(codec.flow.model).to(memory_format=torch.contiguous_format)
    return _tile_encoder(model, img, legacy=True).finish()


def _version_2_file(codec: Codec, img: np.ndarray) -> bytes:
    """A one-tile RGB image as a version 2 file, header written by hand."""
    payload = _legacy_payload(codec, img)
    name = codec.name.encode()
    head = b"NFC" + bytes([2, 0x20, len(name)]) + name + codec.flow.hash + _varint(img.shape[1]) + _varint(img.shape[0])
    head += bytes([0x82]) + _varint(len(payload)) + zlib.crc32(img.tobytes()).to_bytes(4, "little")
    return head + zlib.crc32(head).to_bytes(4, "little") + payload


def test_version_2_files_decode(tiny_codec):
    import torch

    img = photo_like(20, 24, 3, seed=9)
    assert np.array_equal(tiny_codec.decode(_version_2_file(tiny_codec, img)), img)
    # A row-major copy decoded it; the codec's own model stays channels-last.
    conv = next(p for p in tiny_codec.flow.model.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_version_3_files_decode(tiny_codec):
    """Version 3 differs from 4 only in the header (4-byte model hash and header CRC): rewrite one."""
    img = photo_like(20, 24, 3, seed=5)
    h, (chunk,), _ = unpack(float_file(tiny_codec, img, effort=3))
    assert h.version == WRITTEN["flow"] and h.one_tile and len(h.model_hash) == 2
    flags = 0x08 | 2 << 4 | 0x40 | (0x80 if h.oriented else 0)
    name = tiny_codec.name.encode()
    head = b"NFC" + bytes([3, flags, len(name)]) + name + tiny_codec.flow.hash + _varint(24) + _varint(20)
    head += _varint(len(chunk)) + h.pixel_crc.to_bytes(4, "little")
    data = head + zlib.crc32(head).to_bytes(4, "little") + chunk
    assert np.array_equal(tiny_codec.decode(data), img)
    other_hash = bytes(
        [tiny_codec.flow.hash[0], tiny_codec.flow.hash[1], tiny_codec.flow.hash[2] ^ 1, tiny_codec.flow.hash[3]]
    )
    head = head.replace(tiny_codec.flow.hash, other_hash)
    with pytest.raises(ModelMismatch):
        tiny_codec.decode(head + zlib.crc32(head).to_bytes(4, "little") + chunk)


def test_a_transposed_tile_that_is_not_square_is_refused(tiny_codec):
    img = photo_like(16, 24, 3, seed=4)
    enc = _tile_encoder(tiny_codec.flow.model, img, legacy=False)
    enc.push_symbols(np.array([4]), 8)
    h = Header("tiny", tiny_codec.flow.hash, 24, 16, "RGB", 32, 2, zlib.crc32(img.tobytes()), oriented=True)
    with pytest.raises(FormatError, match="transposed"):
        tiny_codec.decode(pack(h, [enc.finish()]))


def test_encode_and_a_version_2_decode_in_two_threads_do_not_disturb_each_other(tiny_codec, tiny_models_dir):
    from concurrent.futures import ThreadPoolExecutor

    img = photo_like(20, 24, 3, seed=9)
    legacy = _version_2_file(tiny_codec, img)
    fresh = Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2)
    with ThreadPoolExecutor(2) as pool:
        decodes = [pool.submit(tiny_codec.decode, legacy) for _ in range(3)]
        encodes = [pool.submit(tiny_codec.encode, photo_like(24, 20, 3, seed=s)) for s in range(3)]
        assert all(np.array_equal(f.result(), img) for f in decodes)
        for s, f in enumerate(encodes):
            assert np.array_equal(fresh.decode(f.result().data), photo_like(24, 20, 3, seed=s))
