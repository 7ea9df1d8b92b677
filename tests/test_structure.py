"""The house rules a newcomer relies on: no module reaches into another's private names, every
model sits behind the one interface, and coding without the flow leaves torch unloaded."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import photo_like

from nfcompress.coders import Coder
from nfcompress.container import KINDS, Header
from nfcompress.policy import AUTO, MODEL_FREE

PACKAGE = Path(__file__).parent.parent / "nfcompress"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_uses(path: Path) -> list[str]:
    """Private names of other nfcompress modules that a module imports or reads."""
    own = _module_name(path)
    tree = ast.parse(path.read_text())
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nfcompress"):
            for a in node.names:
                if node.module != own and a.name.startswith("_"):
                    found.append(f"from {node.module} import {a.name}")
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("nfcompress"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_"):
            target = aliases.get(node.value.id)
            if target and not node.attr.startswith("__") and target != own:
                found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_check_finds_a_private_import(tmp_path, monkeypatch):
    bad = PACKAGE / "coders" / "_probe_for_the_check.py"
    bad.write_text("from nfcompress.codec import _Image\nfrom nfcompress import policy\npolicy._smallest\n")
    try:
        assert _private_uses(bad) == ["from nfcompress.codec import _Image", "policy._smallest"]
    finally:
        bad.unlink()


def test_no_module_imports_another_modules_private_names():
    found = {str(p.relative_to(PACKAGE)): u for p in sorted(PACKAGE.rglob("*.py")) if (u := _private_uses(p))}
    assert found == {}


def test_every_model_is_a_coder_of_a_kind_the_container_names():
    from nfcompress.coders.flow import FlowCoder

    coders = [*MODEL_FREE.values(), FlowCoder]
    assert {c.kind for c in coders} == set(KINDS) == set(AUTO)
    for c in MODEL_FREE.values():
        assert isinstance(c, Coder)
    for name in ("accepts", "encode", "decode"):
        assert callable(getattr(FlowCoder, name))


@pytest.mark.parametrize("kind", sorted(MODEL_FREE))
def test_each_model_free_coder_decodes_its_own_payload_exactly(kind):
    colour = photo_like(80, 72, 3, seed=21)
    if kind == "jpeg":  # an image the JPEG-history model takes: one that was a JPEG
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(colour).save(buf, "JPEG", quality=80)
        colour = np.asarray(Image.open(buf).convert("RGB"))
    coder = MODEL_FREE[kind]
    assert coder.accepts(*colour.shape)
    payload = coder.encode(colour)
    assert payload.kind == kind and payload.ideal_bits > 0
    header = Header("", b"", colour.shape[1], colour.shape[0], "RGB", 0, 0, 0, device="any", kind=kind)
    assert np.array_equal(coder.decode(header, payload.chunks), colour)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_coding_and_decoding_without_the_flow_leaves_torch_unloaded(tmp_path):
    img = photo_like(40, 50, 3, seed=2)
    np.save(tmp_path / "img.npy", img)
    loaded = _modules_after(
        "import numpy as np, nfcompress\n"
        f"img = np.load({str(tmp_path / 'img.npy')!r})\n"
        "for coder in ('linear', 'causal'):\n"
        "    assert (nfcompress.decode(nfcompress.encode(img, coder=coder)) == img).all()\n"
        "codec = nfcompress.Codec.load()\n"
        "assert (codec.decode(codec.encode(img, coder='linear').data) == img).all()\n"
    )
    assert "nfcompress.codec" in loaded and "torch" not in loaded
    assert "torch" in _modules_after(
        "import numpy as np, nfcompress\nnfcompress.encode(np.zeros((8, 8, 3), np.uint8), coder='flow')"
    )


def test_every_package_and_shipped_data_file_is_installed():
    import re

    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(nfcompress[\w.]*)"', pyproject.split("[tool.setuptools]")[1].split("\n[")[0]))
    packages = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, sorted(packages - listed)
    data = {p.parent for p in PACKAGE.rglob("*.safetensors")}
    assert all(f'"{_module_name(d / "__init__.py")}" = ["*.safetensors", "*.json"]' in pyproject for d in data)
