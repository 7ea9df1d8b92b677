"""Several models side by side: weights stored in float16, and each file decoded by the model it needs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny, photo_like
from safetensors.torch import load_file

import nfcompress
from nfcompress.api import _cached
from nfcompress.container import SHIPPED_MODELS, unpack
from nfcompress.errors import ModelMismatch
from nfcompress.weights import (
    DEFAULT_MODEL,
    ModelCard,
    load_model,
    model_of,
    portable_hash,
    round_to_half,
    save_model,
    shipped_dir,
)


def _floats(path) -> set:
    return {t.dtype for t in load_file(str(path)).values() if t.is_floating_point()}


def test_rounded_weights_are_stored_in_half_the_bytes_and_load_as_the_same_floats(tmp_path):
    model = make_tiny(3)
    save_model(model, tmp_path / "full.safetensors", ModelCard("full", {}))
    assert _floats(tmp_path / "full.safetensors") == {torch.float32}
    round_to_half(model)
    save_model(model, tmp_path / "half.safetensors", ModelCard("half", {}))
    assert _floats(tmp_path / "half.safetensors") == {torch.float16}
    full, half = (tmp_path / f"{n}.safetensors" for n in ("full", "half"))
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_model(half)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype and torch.equal(a, b), k
    x = torch.from_numpy(photo_like(32, 32, 3, seed=1).transpose(2, 0, 1)[None].copy()).float()
    with torch.no_grad():
        for za, zb in zip(model.forward_with_params(x)[0], loaded.forward_with_params(x)[0]):
            assert torch.equal(za, zb)


def test_library_decode_uses_the_model_a_file_names(tiny_env):
    img = photo_like(40, 36, 3, seed=2)
    for name in ("tiny", "other"):
        data = nfcompress.encode(img, model=name, coder="flow")
        assert unpack(data)[0].model_name == name
        assert np.array_equal(nfcompress.decode(data), img)  # no model given: the file's own
    with pytest.raises(ModelMismatch, match="'other'"):
        nfcompress.decode(data, model="tiny")


def test_a_file_naming_a_missing_model_says_so(tiny_env):
    data = nfcompress.encode(photo_like(16, 16, 3, seed=4), model="other", coder="flow")
    (tiny_env / "other.safetensors").rename(tiny_env / "gone.safetensors")
    _cached.cache_clear()
    try:
        with pytest.raises(nfcompress.NfcError, match="'other' not found.*models there: plain, tiny\\)"):
            nfcompress.decode(data)
    finally:
        (tiny_env / "gone.safetensors").rename(tiny_env / "other.safetensors")


def test_every_shipped_model_has_its_own_hashes(shipped):
    # Unnamed files tell shipped models apart by 2 bytes of hash: of the weights for float
    # files, of weights and calibration for portable ones.
    floats, portables = set(), set()
    for name in SHIPPED_MODELS:
        card = json.loads((shipped_dir() / f"{name}.json").read_text())
        assert card.get("exact", {}).get("ranges"), f"{name} ships without its portable calibration"
        floats.add(bytes.fromhex(card["sha256"])[:2])
        portables.add(portable_hash(card["sha256"], card["exact"])[:2])
    assert len(floats) == len(portables) == len(SHIPPED_MODELS)


def test_an_unnamed_file_of_an_unknown_shipped_model_asks_for_a_newer_nfcompress(shipped):
    codec = nfcompress.Codec.load()
    header = unpack(codec.encode(photo_like(16, 16, 3, seed=5), coder="flow").data)[0]
    assert header.model_name == "" and model_of(header) == codec.name
    header.model_hash = bytes(a ^ 0xFF for a in header.model_hash)
    with pytest.raises(ModelMismatch, match="newer nfcompress"):
        model_of(header)


def test_models_command_lists_what_can_be_loaded(runner):
    from nfcompress.cli import main

    r = runner.invoke(main, ["models", "--json"])
    assert r.exit_code == 0, r.output
    recs = {rec["name"]: rec for rec in map(json.loads, r.output.splitlines())}
    assert set(recs) == {"tiny", "other", "plain"}
    assert [name for name, rec in recs.items() if not rec["portable"]] == ["plain"]  # its card has no calibration
    assert not any(rec["default"] or rec["shipped"] for rec in recs.values())
    assert all(rec["megabytes"] > 0 and rec["parameters"] is None for rec in recs.values())


def test_models_command_marks_the_default_among_the_shipped(shipped):
    from click.testing import CliRunner

    from nfcompress.cli import main

    r = CliRunner().invoke(main, ["models"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    # and the causal model's three networks and the adaptive model's seven
    assert len(lines) == len(SHIPPED_MODELS) + 10
    assert sorted(line.split(":")[0] for line in lines if "causal" in line) == [
        "nfc-causal (shipped, the causal model)",
        "nfc-causal-2 (shipped, the causal model)",
        "nfc-causal-3 (shipped, the causal model)",
    ]
    adaptive = [line.split(":")[0] for line in lines if "adaptive" in line]
    assert sorted(adaptive) == [
        "nfc-adaptive (shipped, the adaptive model)",
        "nfc-adaptive-3 (shipped, the adaptive model)",
        "nfc-adaptive-4 (shipped, the adaptive model)",
        "nfc-adaptive-5 (shipped, the adaptive model)",
        "nfc-adaptive-6 (shipped, the adaptive model)",
        "nfc-adaptive-7 (shipped, the adaptive model)",
        "nfc-adaptive-96 (shipped, the adaptive model)",
    ]
    assert [line.split()[0] for line in lines if "default" in line] == [f"{DEFAULT_MODEL}"]


def test_a_model_named_like_a_shipped_one_is_refused_before_it_writes_an_ambiguous_file(tmp_path, monkeypatch):
    # Found by name in the user's models folder, where it shadows the shipped one.
    save_model(make_tiny(5), tmp_path / f"{DEFAULT_MODEL}.safetensors", ModelCard(DEFAULT_MODEL, {}))
    monkeypatch.setenv("NFCOMPRESS_MODELS", str(tmp_path))
    codec = nfcompress.Codec.load(DEFAULT_MODEL, tile=32)
    with pytest.raises(nfcompress.NfcError, match="not the shipped"):
        codec.encode(photo_like(16, 16, 3, seed=6), effort=2)  # auto tries the flow from effort 2


def test_shipped_models_load_by_name_beside_a_users_models_folder(tiny_env):
    # tiny_env points $NFCOMPRESS_MODELS at a folder without the shipped models.
    image = photo_like(16, 16, 3, seed=7)
    data = nfcompress.Codec.load().encode(image, coder="flow").data
    assert model_of(unpack(data)[0]) == DEFAULT_MODEL
    assert np.array_equal(nfcompress.decode(data), image)


def test_round_to_half_refuses_weights_float16_cannot_hold():
    model = make_tiny(6)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = 1e5
    with pytest.raises(ValueError, match="65504"):
        round_to_half(model)


def test_cli_decodes_files_of_several_models_each_with_its_own(runner, tmp_path):
    from nfcompress.cli import main

    names = ["tiny", "other", "tiny"]
    images = [photo_like(24, 20, 3, seed=i) for i in range(len(names))]
    paths = [tmp_path / f"{i}.nfc" for i in range(len(names))]
    for p, name, img in zip(paths, names, images):
        p.write_bytes(nfcompress.encode(img, model=name, coder="flow"))
    r = runner.invoke(main, ["decode", *map(str, paths), "--out-dir", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    for i, img in enumerate(images):
        assert np.array_equal(nfcompress.load_image(str(tmp_path / "out" / f"{i}.png")), img)


def test_the_format_document_lists_every_shipped_models_hashes(shipped):
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "format.md").read_text()
    for name in SHIPPED_MODELS:
        card = json.loads((shipped_dir() / f"{name}.json").read_text())
        row = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(row) == 1, f"docs/format.md has no row for {name}"
        weights, portable = bytes.fromhex(card["sha256"])[:2], portable_hash(card["sha256"], card["exact"])[:2]
        assert f"`{weights.hex()}`" in row[0] and f"`{portable.hex()}`" in row[0]


@pytest.mark.parametrize(
    "kind, networks",
    [
        (
            "adaptive",
            {
                13: "nfc-adaptive",
                14: "nfc-adaptive-96",
                16: "nfc-adaptive-3",
                17: "nfc-adaptive-4",
                18: "nfc-adaptive-5",
            },
        ),
        ("causal", {10: "nfc-causal", 15: "nfc-causal-2", 16: "nfc-causal-3"}),
    ],
)
def test_info_names_the_network_each_version_decodes_with(kind, networks):
    from click.testing import CliRunner

    from nfcompress.cli import main

    golden = Path(__file__).parent / "data" / "golden"
    files = [str(golden / f"rgb-32x32.{kind}.v{v}.nfc") for v in networks]
    r = CliRunner().invoke(main, ["info", "--json", *files])
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["model"] for line in r.output.splitlines()] == list(networks.values())


@pytest.mark.parametrize(
    "kind, version",
    [
        ("causal", 10),
        ("causal", 15),
        ("causal", 16),
        ("adaptive", 13),
        ("adaptive", 14),
        ("adaptive", 16),
        ("adaptive", 17),
        ("adaptive", 18),
    ],
)
def test_the_shipped_weights_are_the_ones_each_version_names(kind, version):
    import hashlib

    from nfcompress.coders.adaptive import model as adaptive
    from nfcompress.coders.causal import model as causal
    from nfcompress.weights import shipped_dir

    module = {"causal": causal, "adaptive": adaptive}[kind]
    name, sha256 = module.MODELS[version]
    card = json.loads((shipped_dir() / f"{name}.json").read_text())
    digest = hashlib.sha256((shipped_dir() / f"{name}.safetensors").read_bytes()).hexdigest()
    assert card["sha256"] == sha256 == digest

    def extra(k: int) -> int:  # the adaptive model's extras, and from version 18 the fitted residuals
        if kind == "causal":
            return 0
        return adaptive.EXTRA + adaptive.residual_count(k, adaptive.RINGS.get(version, ()))

    assert card["config"]["features"] == [causal.feature_count(k) + extra(k) for k in range(3)]
    assert [p.second.shape[0] for p in module.load(version=version)] == [card["config"]["hidden"]] * 3
