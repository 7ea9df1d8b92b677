import struct
import zlib

import pytest
from conftest import mutate, reheaded
from hypothesis import given, settings
from hypothesis import strategies as st

from nfcompress.container import (
    LEAN,
    MAX_PIXELS,
    SHIPPED_MODELS,
    UNNAMED_BEFORE_5,
    VERSION,
    WRITTEN,
    Header,
    pack,
    unpack,
)
from nfcompress.errors import FormatError


def _header(**kw):
    base = dict(
        model_name="tiny",
        model_hash=b"\x01\x02\x03\x04",
        width=70,
        height=33,
        mode="RGBA",
        tile=32,
        batch=2,
        pixel_crc=0xDEADBEEF,
    )
    base.update(kw)
    return Header(**base)


def test_pack_unpack_round_trip():
    h = _header()
    data = pack(h, [b"abcd" * 3, b"efgh"], alpha=b"xyz")
    h2, chunks, alpha = unpack(data)
    assert (h2.model_name, h2.model_hash, h2.width, h2.height, h2.mode, h2.tile, h2.batch, h2.pixel_crc) == (
        "tiny",
        b"\x01\x02",
        70,
        33,
        "RGBA",
        32,
        2,
        0xDEADBEEF,
    )
    assert chunks == [b"abcd" * 3, b"efgh"] and alpha == b"xyz"
    assert h2.chunk_sizes == [12, 4]


def test_header_is_small():
    data = pack(_header(mode="RGB"), [b"abcd"])
    assert len(data) - 4 <= 40


@pytest.mark.parametrize("cut", [0, 2, 5, 12, 20, 30])
def test_truncations_are_refused(cut):
    data = pack(_header(), [b"abcd" * 3, b"efgh"], alpha=b"xyz")
    with pytest.raises(FormatError):
        unpack(data[:cut])


def test_truncated_payload_says_truncated():
    data = pack(_header(), [b"abcd" * 3, b"efgh"])
    with pytest.raises(FormatError, match="truncated"):
        unpack(data[:-1])


def test_wrong_magic_and_version():
    data = pack(_header(), [b"abcd"])
    with pytest.raises(FormatError, match="magic"):
        unpack(b"PNG" + data[3:])
    with pytest.raises(FormatError, match="version"):
        unpack(data[:3] + bytes([VERSION + 1]) + data[4:])


def test_huge_declared_size_is_refused_before_allocating():
    h = _header(width=65536, height=65536)
    data = pack(h, [b"abcd"])
    with pytest.raises(FormatError, match="out of range"):
        unpack(data)
    assert 65536 * 65536 > MAX_PIXELS


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_files_end_in_format_error_or_parse(data):
    original = pack(_header(), [b"abcd" * 3, b"efgh"], alpha=b"xyz")
    try:
        h, chunks, alpha = unpack(mutate(original, data))
    except FormatError as e:
        assert str(e)
        return
    # A parse that succeeds passed the header CRC: the header is the original one, or (once in
    # 65,536 damaged headers, for a 16-bit CRC) one whose fields passed every range check.
    if (h.width, h.height, h.mode, h.chunk_sizes) != (70, 33, "RGBA", [12, 4]):
        assert 0 < h.width * h.height <= MAX_PIXELS and all(s % 4 == 0 for s in h.chunk_sizes)
        assert sum(len(c) for c in chunks) + len(alpha) == sum(h.chunk_sizes) + h.alpha_size


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("name", ["tiny", *SHIPPED_MODELS])
@pytest.mark.parametrize("oriented", [False, True])
def test_flags_round_trip(mode, name, oriented):
    h = _header(model_name=name, mode=mode, oriented=oriented, device="cuda")
    h2, chunks, alpha = unpack(pack(h, [b"abcd"], alpha=b"xy" if "A" in mode else b""))
    # A shipped model's name is left out: its hash says which one.
    want = "" if name in SHIPPED_MODELS else name
    assert (h2.mode, h2.model_name, h2.oriented, h2.device, h2.version) == (
        mode,
        want,
        oriented,
        "cuda",
        WRITTEN["flow"],
    )
    assert chunks == [b"abcd"] and alpha == (b"xy" if "A" in mode else b"")


def test_small_image_of_a_shipped_model_has_a_short_header():
    h = _header(model_name=SHIPPED_MODELS[-1], width=32, height=32, mode="RGB", tile=64, batch=64)
    data = pack(h, [b"abcd" * 300])
    assert len(data) - 1200 <= 17
    h2, chunks, alpha = unpack(data)
    assert pack(h2, chunks) == data  # an unnamed header packs again as it was
    assert (h2.model_name, h2.width, h2.height, h2.one_tile, chunks, alpha) == (
        "",
        32,
        32,
        True,
        [b"abcd" * 300],
        b"",
    )


def test_version_1_files_still_parse():
    # Version 1, written by hand: name always spelled out, tiling fields always present.
    head = b"NFC" + bytes([1, 0x10, 4]) + b"tiny" + b"\x01\x02\x03\x04" + bytes([70, 33, 0x83, 5, 2, 2, 12, 4, 3])
    head += (0xDEADBEEF).to_bytes(4, "little")
    data = head + zlib.crc32(head).to_bytes(4, "little") + b"abcd" * 3 + b"efgh" + b"xyz"
    h, chunks, alpha = unpack(data)
    assert (h.model_name, h.width, h.height, h.mode, h.tile, h.batch, h.pixel_crc, h.one_tile) == (
        "tiny",
        70,
        33,
        "RGBA",
        32,
        2,
        0xDEADBEEF,
        False,
    )
    assert chunks == [b"abcd" * 3, b"efgh"] and alpha == b"xyz"


def test_version_3_files_still_parse():
    # Version 3, written by hand: 4 bytes of model hash and a 4-byte header CRC.
    head = b"NFC" + bytes([3, 0x08 | 2 << 4 | 0x80]) + b"\x01\x02\x03\x04" + bytes([32, 32, 8])
    head += (0xDEADBEEF).to_bytes(4, "little")
    data = head + zlib.crc32(head).to_bytes(4, "little") + b"abcdefgh"
    h, chunks, alpha = unpack(data)
    assert (h.model_hash, h.width, h.height, h.mode, h.one_tile, h.oriented, h.version) == (
        b"\x01\x02\x03\x04",
        32,
        32,
        "RGB",
        True,
        True,
        3,
    )
    assert chunks == [b"abcdefgh"] and alpha == b""
    with pytest.raises(FormatError, match="header checksum"):
        unpack(head + (zlib.crc32(head) & 0xFFFF).to_bytes(2, "little") + b"abcdefgh")


def test_version_2_files_still_parse():
    # Version 2, written by hand: the shipped model as an empty name, one tile, a mode byte.
    head = b"NFC" + bytes([2, 0x20, 0]) + b"\x01\x02\x03\x04" + bytes([32, 32, 0x82, 8])
    head += (0xDEADBEEF).to_bytes(4, "little")
    data = head + zlib.crc32(head).to_bytes(4, "little") + b"abcdefgh"
    h, chunks, alpha = unpack(data)
    assert (h.model_name, h.width, h.height, h.mode, h.one_tile, h.oriented, h.version) == (
        UNNAMED_BEFORE_5,
        32,
        32,
        "RGB",
        True,
        False,
        2,
    )
    assert chunks == [b"abcdefgh"] and alpha == b""


def test_an_unnamed_version_4_file_needs_the_model_shipped_then():
    h = _header(model_name=SHIPPED_MODELS[-1], width=32, height=32, mode="RGB", tile=64, batch=64)
    # version 4 had the same layout; an unnamed file there meant the one shipped model
    data = reheaded(pack(h, [b"abcd"]), 4)
    assert unpack(data)[0].model_name == UNNAMED_BEFORE_5


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_a_linear_file_round_trips_with_no_model_fields(mode):
    h = _header(model_name="", model_hash=b"", mode=mode, tile=0, batch=0, device="any", kind="linear")
    alpha = b"xy" if "A" in mode else b""
    data = pack(h, [b"abcdefgh"], alpha=alpha)
    h2, chunks, alpha2 = unpack(data)
    assert (h2.kind, h2.mode, h2.device, h2.model_name, h2.model_hash) == ("linear", mode, "any", "", b"")
    assert (h2.width, h2.height, h2.pixel_crc) == (70, 33, 0xDEADBEEF)
    assert chunks == [b"abcdefgh"] and alpha2 == alpha
    # magic, version, flags, width, height, chunk size, alpha size, pixel CRC, header CRC
    assert len(data) - 8 - len(alpha) == 3 + 1 + 1 + 1 + 1 + 1 + bool(alpha) + 4 + 2


def _with_crc(head: bytes) -> bytes:
    return head + struct.pack("<H", zlib.crc32(head) & 0xFFFF)


def test_the_linear_device_bits_are_refused_before_version_6():
    body = bytes([70, 33, 4]) + (0xDEADBEEF).to_bytes(4, "little")
    assert unpack(_with_crc(b"NFC" + bytes([6, 0x23]) + body) + b"abcd")[0].kind == "linear"
    with pytest.raises(FormatError, match="unknown flags"):
        unpack(_with_crc(b"NFC" + bytes([5, 0x23]) + body) + b"abcd")
    with pytest.raises(FormatError, match="model-free file cannot have"):
        unpack(_with_crc(b"NFC" + bytes([6, 0x23 | 0x40]) + body) + b"abcd")


def test_the_jpeg_history_flag_of_a_linear_file_is_read_from_version_9_only():
    body = bytes([70, 33, 4]) + (0xDEADBEEF).to_bytes(4, "little")
    h = unpack(_with_crc(b"NFC" + bytes([9, 0x23 | 0x08]) + body) + b"abcd")[0]
    assert (h.kind, h.one_tile) == ("jpeg", False)
    assert unpack(_with_crc(b"NFC" + bytes([9, 0x23]) + body) + b"abcd")[0].kind == "linear"
    with pytest.raises(FormatError, match="model-free file cannot have"):
        unpack(_with_crc(b"NFC" + bytes([8, 0x23 | 0x08]) + body) + b"abcd")
    head = Header("", b"", 70, 33, "RGB", 0, 0, 0xDEADBEEF, device="any", kind="jpeg")
    assert unpack(pack(head, [b"abcdefgh"]))[0].kind == "jpeg"


@pytest.mark.parametrize(
    "payload", [b"abcd\x05\x00\x00\x00", b"abcd\x00\x00\x00\x00", b"\x00\x00\x00\x00", b"abcd1234", b""]
)
@pytest.mark.parametrize("alpha", [b"", b"xyz"])
def test_a_lean_file_gives_no_payload_size_and_its_payload_back_whole(payload, alpha):
    h = _header(model_name="", model_hash=b"", mode="RGBA" if alpha else "RGB", tile=0, batch=0, kind="causal")
    assert WRITTEN["causal"] >= LEAN
    data = pack(h, [payload], alpha=alpha)
    h2, chunks, alpha2 = unpack(data)
    assert (h2.kind, h2.version) == ("causal", WRITTEN["causal"])
    assert (chunks, alpha2, h2.chunk_sizes) == ([payload], alpha, [len(payload)])
    kept = len(payload) - min(3, len(payload) - len(payload.rstrip(b"\x00")))
    # magic, version, flags, width, height, alpha size, pixel CRC, header CRC; then the payload
    # without the zero bytes that end its last word
    assert len(data) == 3 + 1 + 1 + 1 + 1 + bool(alpha) + 4 + 2 + kept + len(alpha)


def test_a_lean_payload_must_be_whole_words():
    h = _header(model_name="", model_hash=b"", mode="RGB", tile=0, batch=0, kind="adaptive")
    with pytest.raises(ValueError, match="32-bit words"):
        pack(h, [b"abcde"])


def test_the_kinds_written_before_lean_keep_their_payload_size():
    h = _header(model_name="", model_hash=b"", mode="RGB", tile=0, batch=0, kind="screen")
    assert WRITTEN["screen"] < LEAN
    data = pack(h, [b"abcd\x00\x00\x00\x00"])
    assert unpack(data)[1] == [b"abcd\x00\x00\x00\x00"] and data.endswith(b"\x00" * 4)
