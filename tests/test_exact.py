"""Portable files: the exact integer network and deterministic tables give the same bits anywhere."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import float_file, photo_like

from nfcompress.codec import Codec
from nfcompress.coders.flow import FlowCoder
from nfcompress.container import unpack
from nfcompress.errors import ModelMismatch, NfcError
from nfcompress.flows.exact import exact_copy
from nfcompress.weights import ModelCard, load_model, save_model


def _params(model, x, channels_last: bool, threads: int) -> list[torch.Tensor]:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        with torch.no_grad():
            _, raw = model.to(memory_format=fmt).forward_with_params(x.contiguous(memory_format=fmt))
        return [r.contiguous() for r in raw]
    finally:
        torch.set_num_threads(old)


def test_the_exact_network_gives_the_same_bits_with_other_kernels(calibrated):
    model, exact = calibrated
    x = torch.from_numpy(np.stack([photo_like(64, 64, 3, seed=s).transpose(2, 0, 1) for s in range(4)])).float()
    ex = exact_copy(model, exact["ranges"])
    ways = [_params(ex, x, cl, t) for cl, t in [(True, 2), (False, 2), (False, 1), (True, 1)]]
    for other in ways[1:]:
        assert all(torch.equal(a, b) for a, b in zip(ways[0], other))
    # The float network is only close to it, and the exact one stays near the float one.
    floats = _params(model, x, False, 2)
    assert all(torch.allclose(a, b, atol=0.05, rtol=0.02) for a, b in zip(floats, ways[0]))
    assert not all(torch.equal(a, b) for a, b in zip(floats, ways[0]))


def test_exact_copy_needs_every_range(calibrated):
    model, exact = calibrated
    ranges = dict(exact["ranges"])
    ranges.pop(next(iter(ranges)))
    with pytest.raises(ValueError, match="does not name the model's convolutions"):
        exact_copy(model, ranges)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
@pytest.mark.parametrize("mkldnn", [True, False])
def test_integer_convolutions_equal_a_float64_reference(calibrated, mkldnn):
    """With oneDNN on, or off and a batch of 16 (where PyTorch would pick NNPACK's inexact Winograd)."""
    model, exact = calibrated
    ex = exact_copy(model, exact["ranges"])
    name, conv = next((n, m) for n, m in ex.named_modules() if n.endswith("blocks.0.conv1"))
    x = torch.rand(16, conv.in_channels, 24, 24) * 4
    f = conv.forward
    q = torch.clamp(torch.round(x * f.inv_step), f.lo, f.hi)
    want = torch.nn.functional.conv2d(q.double(), f.weight.double(), None, 1, 1)
    assert want.abs().max() < 2**24
    with torch.backends.mkldnn.flags(enabled=mkldnn, allow_tf32=False):
        got = conv(x)
    bias = f.bias if f.bias is not None else 0.0
    assert torch.equal(got, want.float() * f.out_scale + bias)


def test_the_card_keeps_the_calibration(tiny_models_dir, calibrated):
    _, card = load_model(tiny_models_dir / "tiny.safetensors")
    assert card.exact == json.loads(json.dumps(calibrated[1]))


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_portable_files_decode_with_other_kernels_and_threads(tiny_models_dir):
    img = photo_like(40, 72, 3, seed=3)
    enc = Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2, coder="flow")
    assert enc.flow.portable
    data = enc.encode(img, effort=3).data
    header = unpack(data)[0]
    assert header.device == "any"
    dec = Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.backends.mkldnn.flags(enabled=False, allow_tf32=False):  # other kernels: im2col and GEMM
            assert np.array_equal(dec.decode(data), img)
    finally:
        torch.set_num_threads(old)


def test_old_float_files_still_decode_on_the_machine_that_wrote_them(tiny_models_dir):
    img = photo_like(24, 24, 3, seed=8)
    data = float_file(Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2), img)
    assert unpack(data)[0].device == "cpu"
    assert np.array_equal(Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2).decode(data), img)


def test_no_float_file_is_written(tiny_models_dir):
    codec = Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2, coder="flow")
    with pytest.raises(NfcError, match="no longer written"):
        codec.encode(photo_like(8, 8, 3), portable=False)
    with pytest.raises(NfcError, match="no longer written"):
        Codec.load(str(tiny_models_dir / "tiny.safetensors"), portable=False)
    assert unpack(codec.encode(photo_like(8, 8, 3)).data)[0].device == "any"


def test_a_model_without_calibration_writes_no_flow_file(tiny_models_dir):
    plain = Codec.load(str(tiny_models_dir / "plain.safetensors"), tile=32, batch=2)
    img = photo_like(8, 8, 3)
    with pytest.raises(NfcError, match="no portable form"):
        plain.encode(img, coder="flow")
    res = plain.encode(img)  # auto: the models that need no calibration
    assert res.coder in ("linear", "causal") and unpack(res.data)[0].device == "any"
    with pytest.raises(NfcError, match="no portable form"):
        Codec.load(str(tiny_models_dir / "plain.safetensors"), portable=True)


def test_a_portable_file_needs_the_calibration(tiny_models_dir, tmp_path):
    data = (
        Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2, coder="flow")
        .encode(photo_like(8, 8, 3))
        .data
    )
    model, card = load_model(tiny_models_dir / "tiny.safetensors")
    bare = Codec(FlowCoder(model, card.name, card.sha256, tile=32, batch=2))
    with pytest.raises(ModelMismatch, match="calibration"):
        bare.decode(data)


def test_another_calibration_of_the_same_weights_is_another_model(tiny_models_dir, calibrated, tmp_path):
    model, exact = calibrated
    data = (
        Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2, coder="flow")
        .encode(photo_like(8, 8, 3))
        .data
    )
    card = ModelCard("tiny", {})
    card.exact = {**exact, "ranges": {k: [lo, 2 * hi] for k, (lo, hi) in exact["ranges"].items()}}
    save_model(model, tmp_path / "tiny.safetensors", card)
    with pytest.raises(ModelMismatch, match="weights and calibration"):
        Codec.load(str(tmp_path / "tiny.safetensors"), tile=32, batch=2).decode(data)


def test_pyproject_declares_the_torch_the_exact_sums_need():
    import re

    from nfcompress.flows.exact import MIN_TORCH

    (spec,) = re.findall(r'"torch>=([\d.]+)', (Path(__file__).parent.parent / "pyproject.toml").read_text())
    floor = tuple(int(v) for v in spec.split(".")[:2])
    assert floor >= MIN_TORCH, f"pyproject allows torch {floor}, but the exact network needs {MIN_TORCH}"
    assert isinstance(torch.backends.mkldnn.conv.fp32_precision, str)  # the control MIN_TORCH is for


def test_a_codec_bound_to_a_gpu_codes_and_decodes_portable_files_on_the_cpu(tiny_models_dir):
    """--device cuda writes the same portable files: no tensor of a portable file goes to the GPU
    (this machine has none, so one that did would raise)."""
    codec = Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2, coder="flow")
    codec.flow.device = "cuda"  # as --device cuda binds it, without the GPU the model would move to
    img = photo_like(40, 72, 3, seed=3)
    data = codec.encode(img).data
    assert unpack(data)[0].device == "any"
    assert (
        data == Codec.load(str(tiny_models_dir / "tiny.safetensors"), tile=32, batch=2, coder="flow").encode(img).data
    )
    assert np.array_equal(codec.decode(data), img)
