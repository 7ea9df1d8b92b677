"""Fuzzing the whole decode: every damaged file ends in NfcError or the exact image, quickly."""

import io
import os
import time

import numpy as np
import pytest
from conftest import mutate, photo_like
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nfcompress.container import pack, unpack
from nfcompress.errors import FormatError, NfcError

EXAMPLES = int(os.environ.get("NFC_FUZZ_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def originals(tiny_codec):
    images = [photo_like(20, 27, 3, seed=1), photo_like(40, 33, 4, seed=2), photo_like(9, 9, 1, seed=3)[..., 0]]
    coded = [(img, tiny_codec.encode(img).data) for img in images]
    linear = [(img, tiny_codec.encode(img, coder="linear").data) for img in images[:2]]
    buf = io.BytesIO()
    Image.fromarray(photo_like(72, 80, 3, seed=4)).save(buf, "JPEG", quality=50)
    once_a_jpeg = np.asarray(Image.open(buf).convert("RGB"))
    jpeg = tiny_codec.encode(once_a_jpeg, coder="linear").data
    assert unpack(jpeg)[0].kind == "jpeg"
    flow = (images[0], tiny_codec.encode(images[0], coder="flow").data)
    causal = (images[1], tiny_codec.encode(images[1], coder="causal").data)
    assert unpack(causal[1])[0].kind == "causal"
    adaptive = (images[0], tiny_codec.encode(images[0], coder="adaptive").data)
    # orientations too, then the adaptive, the causal and the JPEG-history model last
    oriented = (images[1], tiny_codec.encode(images[1], effort=3).data)
    return [flow] + coded + [oriented] + linear + [adaptive, causal, (once_a_jpeg, jpeg)]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_damaged_files_fail_cleanly_or_decode_exactly(tiny_codec, originals, data):
    img, good = originals[data.draw(st.integers(0, len(originals) - 1))]
    bad = mutate(good, data)
    t = time.perf_counter()
    try:
        out = tiny_codec.decode(bad)
    except NfcError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert np.array_equal(out, img)
    assert time.perf_counter() - t < 20


@settings(
    max_examples=max(20, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_payload_damage_behind_a_valid_header_fails_cleanly(tiny_codec, originals, data):
    """Rebuild the header around damaged chunks, so the payload itself is what is tested."""
    img, good = originals[data.draw(st.integers(0, len(originals) - 1))]
    header, chunks, alpha = unpack(good)
    i = data.draw(st.integers(0, len(chunks) - 1))
    c = bytearray(chunks[i])
    j = data.draw(st.integers(0, len(c) - 1))
    c[j] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()) and len(c) > 4:
        c = c[:-4]
    chunks[i] = bytes(c)
    try:
        out = tiny_codec.decode(pack(header, chunks, alpha))
    except NfcError as e:
        assert str(e)
    else:
        assert np.array_equal(out, img)


# A flow, a linear, an adaptive, a causal and a JPEG-history file.
@pytest.mark.parametrize("which", [0, -4, -3, -2, -1])
def test_enormous_declared_size_is_refused_quickly(tiny_codec, originals, which):
    header, chunks, alpha = unpack(originals[which][1])
    header.width, header.height = 16384, 16384
    t = time.perf_counter()
    with pytest.raises(NfcError):
        tiny_codec.decode(pack(header, chunks, alpha))
    assert time.perf_counter() - t < 2


def test_a_short_run_of_the_long_fuzz_finds_nothing(shipped):
    """scripts/fuzz_decode.py over the golden corpus (every payload kind, the shipped models)."""
    import fuzz_decode as fuzz

    seed = int(os.environ.get("NFC_FUZZ_SEED", "0"))
    t = fuzz.run(0, int(os.environ.get("NFC_FUZZ_FILES", "200")), seed=seed, timeout=120)
    assert (t.crashes, t.hangs, t.wrong) == (0, 0, 0), t.failures
    assert t.refused + t.exact == t.tried and t.refused > 0 and t.exact > 0


def test_a_flow_file_declaring_runs_of_no_tiles_is_refused(tiny_codec):
    """Found by the fuzz: a batch of 0 in the header divided by zero."""
    header, chunks, alpha = unpack(tiny_codec.encode(photo_like(40, 70, 3)).data)
    assert header.kind == "flow" and not header.one_tile
    header.batch = 0
    with pytest.raises(FormatError, match="runs of 0"):
        tiny_codec.decode(pack(header, chunks, alpha))
