import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import photo_like
from PIL import Image

from nfcompress.cli import main


@pytest.fixture
def folder(tmp_path, tiny_env):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        Image.fromarray(photo_like(16 + 8 * i, 24, 3, seed=i)).save(d / f"{i}.png")
    return d


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_bench_json_and_plot(folder, tmp_path, jobs):
    plot = tmp_path / "chart.png"
    r = CliRunner().invoke(main, ["bench", "--model", "tiny", "--json", "-j", jobs, "--plot", str(plot), str(folder)])
    assert r.exit_code == 0, r.output
    rows = {d["codec"]: d for d in map(json.loads, r.output.strip().splitlines())}
    assert {"nfcompress", "png", "webp", "jxl"} <= rows.keys()
    sub = sum(16 * 24 * 3 + 8 * i * 24 * 3 for i in range(3))
    for d in rows.values():
        assert d["images"] == 3 and d["subpixels"] == sub and not d["failures"]
        assert d["bpsp"] == pytest.approx(8 * d["bytes"] / sub, abs=1e-3)
        assert d["encode_msubs"] > 0 and d["decode_msubs"] > 0
    assert rows["nfcompress"]["ideal_bpsp"] > 0
    assert (rows["nfcompress"]["model"], rows["png"]["model"]) == ("tiny", None)
    assert sum(rows["nfcompress"]["coded"].values()) == rows["nfcompress"]["images"] and rows["png"]["coded"] == {}
    assert Image.open(plot).size[0] > 100


def test_bench_table(folder):
    r = CliRunner().invoke(main, ["bench", "--model", "tiny", str(folder)])
    assert r.exit_code == 0, r.output
    assert "nfcompress" in r.output and "webp" in r.output and "Msub/s" in r.output


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 2), (20, 30, 4)])
def test_webp_round_trips_grey_and_alpha_images_in_their_mode(shape):
    from nfcompress.classical import encode_classical

    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    data, decode = encode_classical("webp", img)
    assert np.array_equal(decode(data), img)
