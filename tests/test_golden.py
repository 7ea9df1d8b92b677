"""The golden corpus (tests/data/golden, scripts/make_golden.py): committed files of every payload
kind, mode and format version still read, decoded on whatever machine runs the tests."""

import pytest
from make_golden import GOLDEN, pixel_sha256, read_manifest

import nfcompress
from nfcompress.container import KINDS, VERSION, WRITTEN, unpack
from nfcompress.errors import ChecksumError

MANIFEST = read_manifest()
SOURCED = [e for e in MANIFEST if e["coder"] is not None]


@pytest.fixture(autouse=True)
def _shipped_models(shipped):
    pass


def test_the_corpus_covers_every_kind_mode_and_version():
    assert {e["kind"] for e in MANIFEST} == set(KINDS)
    assert {e["mode"] for e in MANIFEST} == {"L", "LA", "RGB", "RGBA"}
    assert {e["format_version"] for e in MANIFEST} >= {2, 4, 6, 7, 8, 9, VERSION}
    assert any(e["source"] and e["source"].startswith("palette") for e in MANIFEST)
    sizes = {unpack((GOLDEN / e["file"]).read_bytes())[0].width for e in MANIFEST}
    assert 1 in sizes and any(w % 2 for w in sizes)
    assert len({e["file"] for e in MANIFEST}) == len(MANIFEST) == len(list(GOLDEN.glob("*.nfc")))


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_every_golden_file_decodes_exactly(entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    header = unpack(data)[0]
    assert (header.version, header.mode, header.kind) == (entry["format_version"], entry["mode"], entry["kind"])
    assert (header.device == "any") == ("bound_to" not in entry)
    try:
        pixels = nfcompress.decode(data)
    except ChecksumError as e:
        # Only a float file (written before every file was portable) may fail, and then loudly.
        assert "bound_to" in entry, f"{entry['file']} is portable and must decode on every machine: {e}"
        assert "floating-point arithmetic differs" in str(e)
        return
    assert pixel_sha256(pixels) == entry["pixels_sha256"]


@pytest.mark.parametrize("entry", SOURCED, ids=[e["file"] for e in SOURCED])
def test_every_golden_source_encodes_again(entry):
    pixels = nfcompress.load_image(GOLDEN / entry["source"])
    assert pixel_sha256(pixels) == entry["pixels_sha256"]
    data = nfcompress.encode(pixels, coder=entry["coder"], effort=entry["effort"])
    if entry["same_bytes"] and entry["format_version"] == WRITTEN[entry["kind"]]:
        # The flow at effort 1, the causal and the screen model are exact integer arithmetic end
        # to end (a file of an older version of its kind: see its model's tests).
        assert data == (GOLDEN / entry["file"]).read_bytes()
    else:
        # A float choice (the linear fit, the JPEG search, the orientation search, auto's pick)
        # may go another way on another CPU: the file may differ, but must decode exactly.
        assert unpack(data)[0].version == WRITTEN[entry["kind"]]
    assert pixel_sha256(nfcompress.decode(data)) == entry["pixels_sha256"]
