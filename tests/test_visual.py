import numpy as np
import pytest
from click.testing import CliRunner
from conftest import photo_like
from PIL import Image

import nfcompress  # noqa: F401  (registers the Pillow plugin)
from nfcompress.cli import main
from nfcompress.container import unpack
from nfcompress.visual import bit_map, grid, heatmap_image, sample


def test_bit_map_adds_up_to_the_ideal_bits(tiny_codec):
    img = photo_like(37, 50, 3)
    bits = bit_map(tiny_codec, img)
    assert bits.shape == (37, 50) and (bits > 0).all()
    ideal, _ = tiny_codec.ideal_bits(img)
    # padding pixels carry bits too; the map shows only the image's own
    assert bits.sum() <= ideal and bits.sum() > 0.7 * ideal
    assert heatmap_image(img, bits).size == (100, 37 + 6)


def test_samples_are_images_and_repeat_with_the_seed(tiny_model):
    a = sample(tiny_model, 4, 16, seed=3)
    b = sample(tiny_model, 4, 16, seed=3)
    c = sample(tiny_model, 4, 16, seed=4)
    assert a.shape == (4, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert grid(a).size == (2 * 18 + 2, 2 * 18 + 2)


@pytest.mark.parametrize(
    "mode, coder",  # coder None: auto; the causal model codes colour images only
    [(m, c) for m in ("RGB", "RGBA", "L") for c in ("flow", "linear", "causal", None) if (m, c) != ("L", "causal")],
)
def test_pillow_reads_and_writes_nfc(tiny_env, tmp_path, mode, coder):
    im = Image.fromarray(photo_like(21, 34, 4)).convert(mode)
    im.save(tmp_path / "x.nfc", model="tiny", coder=coder)
    h = unpack((tmp_path / "x.nfc").read_bytes())[0]
    assert coder is None or h.kind == coder
    back = Image.open(tmp_path / "x.nfc")
    assert back.format == "NFC" and back.mode == mode and back.size == (34, 21)
    assert np.array_equal(np.asarray(back), np.asarray(im))


def test_heatmap_and_sample_commands(tiny_env, tmp_path):
    Image.fromarray(photo_like(24, 24, 3)).save(tmp_path / "a.png")
    r = CliRunner().invoke(
        main, ["heatmap", "--model", "tiny", str(tmp_path / "a.png"), "-o", str(tmp_path / "h.png"), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "h.png").size[0] == 48
    r = CliRunner().invoke(
        main, ["sample", "--model", "tiny", "-n", "4", "--size", "16", "-o", str(tmp_path / "s.png")]
    )
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "s.png").size == (38, 38)
    r = CliRunner().invoke(main, ["sample", "--model", "tiny", "--size", "12", "-o", str(tmp_path / "t.png")])
    assert r.exit_code != 0 and not (tmp_path / "t.png").exists()
