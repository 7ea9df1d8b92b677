"""Shared fixtures: a tiny randomly perturbed model (fast, non-trivial) and small images."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from PIL import Image

from nfcompress.codec import Codec
from nfcompress.flows import IDF, IDFConfig
from nfcompress.flows.exact import LEVELS, calibrate
from nfcompress.weights import ModelCard, save_model

# The project's scripts (the golden corpus, the long fuzz) import as modules in the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

TINY = IDFConfig(levels=3, coupling_width=8, prior_width=8, mixtures=2, top_groups=[16, 16, 8, 8])


def make_tiny(seed: int = 0) -> IDF:
    """A tiny IDF with every weight nudged off its init, so couplings and priors do something."""
    torch.manual_seed(seed)
    model = IDF(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model() -> IDF:
    return make_tiny()


def calibrated_card(model: IDF, name: str) -> ModelCard:
    """A card for `model` holding the calibration of its exact integer form (the flow writes only that)."""
    x = torch.from_numpy(np.stack([photo_like(32, 32, 3, seed=s).transpose(2, 0, 1) for s in range(8)])).float()
    card = ModelCard(name, {})
    card.exact = {"levels": LEVELS, "ranges": calibrate(model, [x])}
    return card


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory, tiny_model):
    """A models folder: the tiny model as 'tiny' and another as 'other', both calibrated, and the
    tiny one uncalibrated as 'plain'."""
    d = tmp_path_factory.mktemp("models")
    save_model(tiny_model, d / "tiny.safetensors", calibrated_card(tiny_model, "tiny"))
    other = make_tiny(1)
    save_model(other, d / "other.safetensors", calibrated_card(other, "other"))
    save_model(tiny_model, d / "plain.safetensors", ModelCard("plain", {}))  # no calibration: no flow files
    return d


def float_file(codec: Codec, image: np.ndarray, effort: int = 1) -> bytes:
    """A file as nfcompress before 0.10 wrote with --no-portable: the flow's float network, bound
    to the machine that ran it. Nothing writes these now; the decoder still reads them."""
    from nfcompress.codec import _Image

    im = _Image.of(image)
    with torch.no_grad():
        return im.file(codec.flow._encode([im.colour], None, effort, False)[0]).data


@pytest.fixture(scope="session")
def tiny_codec(tiny_models_dir, monkeypatch_session) -> Codec:
    return Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2, coder="flow")


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture
def tiny_env(tiny_models_dir, monkeypatch):
    """Named models resolve to the tiny ones; the library's codec cache starts empty."""
    from nfcompress.api import _cached

    monkeypatch.setenv("NFCOMPRESS_MODELS", str(tiny_models_dir))
    _cached.cache_clear()
    yield tiny_models_dir
    _cached.cache_clear()


@pytest.fixture
def shipped(monkeypatch):
    """Named models resolve to the shipped ones, whatever the environment says."""
    monkeypatch.delenv("NFCOMPRESS_MODELS", raising=False)


@pytest.fixture
def runner(tiny_env):
    """A Click runner whose commands see the tiny models."""
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def photo_like(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth image with noise, more like a photo than uniform noise."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(yy / 7.0)[..., None] * np.cos(xx / 11.0)[..., None] + r.normal(0, 6, (h, w, c))
    return np.clip(base, 0, 255).astype(np.uint8)


def mutate(data: bytes, d) -> bytes:
    """A damaged copy of `data`, the damage drawn from hypothesis data `d`."""
    buf = bytearray(data)
    kind = d.draw(st.sampled_from(["flip", "flips", "insert", "delete", "truncate", "random", "splice"]))
    if kind == "flip":
        i = d.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= 1 << d.draw(st.integers(0, 7))
    elif kind == "flips":
        for i in d.draw(st.lists(st.integers(0, len(buf) - 1), min_size=2, max_size=20)):
            buf[i] = d.draw(st.integers(0, 255))
    elif kind == "insert":
        i = d.draw(st.integers(0, len(buf)))
        buf[i:i] = d.draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        i = d.draw(st.integers(0, len(buf) - 1))
        del buf[i : i + d.draw(st.integers(1, 16))]
    elif kind == "truncate":
        buf = buf[: d.draw(st.integers(0, len(buf) - 1))]
    elif kind == "random":
        buf = bytearray(d.draw(st.binary(max_size=400)))
    else:
        buf = bytearray(b"NFC" + d.draw(st.binary(max_size=100)))
    return bytes(buf)


@pytest.fixture(scope="session")
def calibrated():
    """The tiny model and its calibration, measured on photo-like images."""
    model = make_tiny()
    return model, calibrated_card(model, "tiny").exact


def run_cli(args: list[str], threads: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m nfcompress ARGS --threads N` in a process of its own, OpenMP's threads to match."""
    return subprocess.run(
        [sys.executable, "-m", "nfcompress", *args, "--threads", str(threads)],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {}), OMP_NUM_THREADS=str(threads)),
        timeout=300,
    )


def code_apart(src: Path, tmp_path: Path, coder: str = "auto") -> tuple[bytes, np.ndarray]:
    """Encode an image file with the library in one process (1 thread) and decode the file in
    another (2 threads): the file and the decoded pixels."""
    code = "import sys, numpy as np, torch; from PIL import Image; torch.set_num_threads({t}); import nfcompress;"
    enc = (
        code
        + "open(sys.argv[2], 'wb').write(nfcompress.encode(np.asarray(Image.open(sys.argv[1])), coder=sys.argv[3]))"
    )
    dec = code + "Image.fromarray(nfcompress.decode(open(sys.argv[1], 'rb').read())).save(sys.argv[2])"
    nfc, out = tmp_path / "x.nfc", tmp_path / "back.png"
    subprocess.run([sys.executable, "-c", enc.format(t=1), str(src), str(nfc), coder], check=True, timeout=300)
    subprocess.run([sys.executable, "-c", dec.format(t=2), str(nfc), str(out)], check=True, timeout=300)
    return nfc.read_bytes(), np.asarray(Image.open(out))


def tiny_planes(seed: int, extra: int = 0, hidden: int = 8, mixtures: int = 2) -> list:
    """Random small integer networks of the causal model's layers over its features and `extra`
    more (the adaptive model's): any weights must code and decode exactly."""
    from nfcompress.coders.causal import model as causal

    rng = np.random.default_rng(seed)

    def ints(scale: int, *shape: int) -> np.ndarray:
        return rng.integers(-scale, scale + 1, shape).astype(np.float64)

    return [
        causal.PlaneWeights(
            first=ints(3000, causal.feature_count(k) + extra, hidden),
            first_bias=ints(1 << 16, hidden),
            second=ints(2000, hidden, hidden),
            second_bias=ints(1 << 20, hidden),
            out=ints(3000, hidden, 3 * mixtures),
            out_bias=ints(1 << 21, 3 * mixtures),
        )
        for k in range(3)
    ]


def reheaded(data: bytes, version: int, flags: int | None = None) -> bytes:
    """A file (as `pack` wrote it) whose header says another format version (and flags), with its
    header check made good again; a model-free file's payload size and whole last word are put in
    or left out as the new version's layout has them (from LEAN, none)."""
    import struct
    import zlib

    from nfcompress.container import LEAN, _trimmed, _varint, unpack

    h, chunks, alpha = unpack(data)
    head = bytearray(data[:3]) + bytes([version, data[4] if flags is None else flags])
    if not h.model_free:
        payload = sum(map(len, chunks)) + len(alpha)  # the bytes after the header check
        head = head + data[5 : len(data) - payload - 2]
        return bytes(head) + struct.pack("<H", zlib.crc32(bytes(head)) & 0xFFFF) + data[len(data) - payload :]
    lean = version >= LEAN
    head += _varint(h.width) + _varint(h.height) + (b"" if lean else _varint(len(chunks[0])))
    head += (_varint(len(alpha)) if alpha else b"") + struct.pack("<I", h.pixel_crc)
    head += struct.pack("<H", zlib.crc32(bytes(head)) & 0xFFFF)
    return bytes(head) + (_trimmed(chunks[0]) if lean else chunks[0]) + alpha
