import json
import os

import numpy as np
import pytest
from conftest import photo_like, run_cli
from PIL import Image

from nfcompress.cli import main
from nfcompress.container import WRITTEN


def _save(path, arr, mode=None, **kw):
    Image.fromarray(arr, mode=mode).save(path, **kw) if mode else Image.fromarray(arr).save(path, **kw)
    return path


def test_encode_decode_info_json(runner, tmp_path):
    img = photo_like(24, 40, 3)
    src = _save(tmp_path / "a.png", img)
    r = runner.invoke(main, ["encode", "--model", "tiny", "--coder", "flow", "--json", str(src)])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output.strip().splitlines()[-1])
    assert {"input", "output", "bytes", "bpsp", "ideal_bpsp", "effort", "coder", "seconds"} <= rec.keys()
    nfc = tmp_path / "a.nfc"
    assert rec["bytes"] == nfc.stat().st_size and rec["output"] == str(nfc)
    assert rec["bpsp"] == pytest.approx(8 * rec["bytes"] / img.size, abs=1e-3)
    (tmp_path / "a.png").rename(tmp_path / "orig.png")
    r = runner.invoke(main, ["decode", str(nfc)])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), img)
    r = runner.invoke(main, ["info", "--json", str(nfc)])
    info = json.loads(r.output)
    assert (info["width"], info["height"], info["mode"], info["model"]) == (40, 24, "RGB", "tiny")
    assert (info["format_version"], info["orientations"], info["coder"]) == (WRITTEN["flow"], False, "flow")


def test_bpd_json(runner, tmp_path):
    src = _save(tmp_path / "a.png", photo_like(16, 16, 3))
    r = runner.invoke(main, ["bpd", "--model", "tiny", "--json", str(src), str(src)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(s) for s in r.output.strip().splitlines()]
    assert len(lines) == 2 and lines[0]["ideal_bpsp"] > 0 and lines[0]["input"] == str(src)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
def test_modes_round_trip_through_png(runner, tmp_path, mode):
    base = Image.fromarray(photo_like(19, 23, 4)).convert(mode if mode != "P" else "RGB")
    if mode == "P":
        base = base.quantize(16)
    src = tmp_path / f"in_{mode}.png"
    base.save(src)
    r = runner.invoke(main, ["encode", "--model", "tiny", str(src), "-o", str(tmp_path / "x.nfc")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["decode", str(tmp_path / "x.nfc"), "-o", str(tmp_path / "out.png")])
    assert r.exit_code == 0, r.output
    want = np.asarray(Image.open(src).convert({"1": "L", "P": "RGB"}.get(mode, mode)))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), want)


def test_existing_output_is_not_overwritten_without_force(runner, tmp_path):
    src = _save(tmp_path / "a.png", photo_like(8, 8, 3))
    (tmp_path / "a.nfc").write_bytes(b"keep")
    r = runner.invoke(main, ["encode", "--model", "tiny", str(src)])
    assert r.exit_code != 0 and "already exists" in r.output
    assert (tmp_path / "a.nfc").read_bytes() == b"keep"
    r = runner.invoke(main, ["encode", "--model", "tiny", "--force", str(src)])
    assert r.exit_code == 0 and (tmp_path / "a.nfc").read_bytes()[:3] == b"NFC"


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda p: p.write_text("hello, not an image"), "not an image"),
        (lambda p: Image.fromarray(np.zeros((4, 4), np.uint16)).save(p), "16-bit"),
        (lambda p: Image.new("CMYK", (4, 4)).save(p, format="TIFF"), "CMYK"),
    ],
)
def test_bad_images_give_one_line_and_no_output(runner, tmp_path, make, needle):
    src = tmp_path / "bad.tif"
    make(src)
    r = runner.invoke(main, ["encode", "--model", "tiny", str(src)])
    assert r.exit_code != 0
    assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bad.nfc").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tif"]


def test_the_flow_of_a_model_without_calibration_writes_no_file(runner, tmp_path):
    src = _save(tmp_path / "a.png", photo_like(8, 8, 3))
    r = runner.invoke(main, ["encode", "--model", "plain", "--coder", "flow", str(src)])
    assert r.exit_code != 0 and "no portable form" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "a.nfc").exists()
    r = runner.invoke(main, ["encode", "--model", "plain", "--json", str(src)])  # auto: another model codes it
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["coder"] != "flow" and json.loads(r.output)["portable"]


def test_no_portable_is_refused_in_one_line(runner, tmp_path):
    src = _save(tmp_path / "a.png", photo_like(8, 8, 3))
    r = runner.invoke(main, ["encode", "--model", "tiny", "--no-portable", "--coder", "flow", str(src)])
    assert r.exit_code == 1 and "no longer written" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "a.nfc").exists()


def test_damaged_files_give_one_line_and_no_output(runner, tmp_path):
    src = _save(tmp_path / "a.png", photo_like(30, 30, 3))
    runner.invoke(main, ["encode", "--model", "tiny", str(src), "-o", str(tmp_path / "a.nfc")])
    data = (tmp_path / "a.nfc").read_bytes()
    (tmp_path / "t.nfc").write_bytes(data[: len(data) // 2])
    (tmp_path / "c.nfc").write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    (tmp_path / "g.nfc").write_bytes(b"garbage!" * 10)
    for name, needle in [("t", "truncated"), ("c", ""), ("g", "not an .nfc file")]:
        r = runner.invoke(main, ["decode", str(tmp_path / f"{name}.nfc")])
        assert r.exit_code != 0 and needle in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / f"{name}.png").exists()


def test_file_from_another_model_names_it(runner, tmp_path):
    src = _save(tmp_path / "a.png", photo_like(8, 8, 3))
    runner.invoke(main, ["encode", "--model", "tiny", "--coder", "flow", str(src)])
    r = runner.invoke(main, ["decode", "--model", "other", str(tmp_path / "a.nfc"), "-o", str(tmp_path / "o.png")])
    assert r.exit_code != 0 and "'tiny'" in r.output
    assert not (tmp_path / "o.png").exists()


def test_batch_with_one_bad_file_codes_the_rest(runner, tmp_path):
    good = [_save(tmp_path / f"g{i}.png", photo_like(8, 8, 3, seed=i)) for i in range(2)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = tmp_path / "out"
    out.mkdir()
    r = runner.invoke(main, ["encode", "--model", "tiny", "--out-dir", str(out), str(good[0]), str(bad), str(good[1])])
    assert r.exit_code == 1
    assert "bad.png" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["g0.nfc", "g1.nfc"]


def test_stdin_to_stdout(runner, tmp_path):
    img = photo_like(10, 12, 3)
    png = (_save(tmp_path / "a.png", img)).read_bytes()
    r = runner.invoke(main, ["encode", "--model", "tiny", "-", "-o", "-"], input=png)
    assert r.exit_code == 0
    nfc = r.stdout_bytes
    assert nfc[:3] == b"NFC"
    r = runner.invoke(main, ["decode", "-", "-o", "-"], input=nfc)
    assert r.exit_code == 0
    import io

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.stdout_bytes))), img)


def test_encode_and_decode_in_separate_processes_with_other_thread_counts(tiny_models_dir, tmp_path):
    """The flow's files (each other model's have a test of this in its own file)."""
    img = photo_like(70, 90, 3, seed=9)
    src = _save(tmp_path / "a.png", img)
    env = {"NFCOMPRESS_MODELS": str(tiny_models_dir)}
    r = run_cli(["encode", "--model", "tiny", "--coder", "flow", str(src)], 1, env)
    assert r.returncode == 0, r.stderr
    src.rename(tmp_path / "orig.png")
    r = run_cli(["decode", str(tmp_path / "a.nfc")], 2, env)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), img)


def test_effort_is_an_encode_option_and_decode_needs_none(runner, tmp_path):
    src = _save(tmp_path / "a.png", photo_like(40, 40, 3))
    sizes = {}
    for effort in ("1", "3"):
        out = tmp_path / f"e{effort}.nfc"
        r = runner.invoke(main, ["encode", "--model", "tiny", "--effort", effort, "--json", str(src), "-o", str(out)])
        assert r.exit_code == 0, r.output
        sizes[effort] = json.loads(r.output)["ideal_bpsp"]
        r = runner.invoke(main, ["decode", str(out), "-o", str(tmp_path / f"e{effort}.png")])
        assert r.exit_code == 0, r.output
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"e{effort}.png")), np.asarray(Image.open(src)))
    assert sizes["3"] <= sizes["1"] + 3 * 4 / (40 * 40 * 3)  # 3 bits for each of 4 tiles
    r = runner.invoke(main, ["encode", "--model", "tiny", "--effort", "4", str(src)])
    assert r.exit_code != 0 and "effort" in r.output.lower()


@pytest.mark.parametrize("coder", ["flow", "auto"])
def test_many_small_files_code_together_and_decode_elsewhere_one_verdict_each(tiny_models_dir, tmp_path, coder):
    """Grouped encodes write the bytes a lone encode writes; a damaged file among many fails alone."""
    images = [photo_like(24 + 4 * (i % 3), 32, 3, seed=i) for i in range(7)]
    srcs = [str(_save(tmp_path / f"i{i}.png", im)) for i, im in enumerate(images)]
    env = {"NFCOMPRESS_MODELS": str(tiny_models_dir)}
    r = run_cli(["encode", "--model", "tiny", "--coder", coder, "--json", *srcs], 1, env)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(rec["portable"] for rec in records) and (coder == "auto" or {rec["coder"] for rec in records} == {coder})
    alone = run_cli(["encode", "--model", "tiny", "--coder", coder, srcs[3], "-o", str(tmp_path / "alone.nfc")], 2, env)
    assert alone.returncode == 0, alone.stderr
    assert (tmp_path / "alone.nfc").read_bytes() == (tmp_path / "i3.nfc").read_bytes()
    data = bytearray((tmp_path / "i5.nfc").read_bytes())
    data[-6] ^= 0x40
    (tmp_path / "i5.nfc").write_bytes(bytes(data))
    for s in srcs:
        os.remove(s)
    r = run_cli(["decode", "-j", "2", *[str(tmp_path / f"i{i}.nfc") for i in range(7)]], 1, env)
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "i5.nfc" in errors[0] and "1 of 7" in errors[1], r.stderr
    assert not (tmp_path / "i5.png").exists()
    for i, im in enumerate(images):
        if i != 5:
            assert np.array_equal(np.asarray(Image.open(tmp_path / f"i{i}.png")), im)


def test_the_coder_choices_are_the_codecs():
    from nfcompress.policy import CODERS

    option = next(p for p in main.commands["encode"].params if p.name == "coder")
    assert tuple(option.type.choices) == CODERS
