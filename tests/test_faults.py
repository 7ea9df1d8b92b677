"""Faults: interrupts, failing writes, many files with a bad one, parallel workers, size limits."""

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import photo_like
from PIL import Image

from nfcompress import io as nio
from nfcompress.cli import main
from nfcompress.errors import NfcError


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.nfc"

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nio.os, "fsync", full_disk)
    with pytest.raises(NfcError, match="No space left"):
        nio.atomic_write(target, b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.nfc"
    target.write_bytes(b"old")

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(nio.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        nio.atomic_write(target, b"new", force=True)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.nfc"]


@pytest.mark.parametrize("delay", [0.5, 2.0])
def test_sigterm_midway_leaves_no_partial_output_and_the_input_untouched(tiny_models_dir, tmp_path, delay):
    src = tmp_path / "big.png"
    Image.fromarray(photo_like(900, 900, 3)).save(src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    env = dict(os.environ, NFCOMPRESS_MODELS=str(tiny_models_dir))
    p = subprocess.Popen(
        [sys.executable, "-m", "nfcompress", "encode", "--model", "tiny", str(src)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert "Traceback" not in err
    names = sorted(x.name for x in tmp_path.iterdir())
    assert not any(n.endswith(".part") for n in names)
    if p.returncode == 0:  # it finished before the signal: the output must then be whole
        assert (tmp_path / "big.nfc").read_bytes()[:3] == b"NFC"
    else:  # killed before the handler was set (-15), or stopped cleanly by it (130)
        assert names == ["big.png"] and p.returncode in (130, -signal.SIGTERM)
        assert p.returncode == -signal.SIGTERM or "interrupted" in err
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


def test_parallel_workers_code_every_file_exactly(runner, tmp_path):
    images = {f"im{i}.png": photo_like(12 + i, 20 + 2 * i, 3, seed=i) for i in range(5)}
    for name, img in images.items():
        Image.fromarray(img).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    srcs = [str(tmp_path / n) for n in [*images, "broken.png"]]
    enc = tmp_path / "enc"
    r = runner.invoke(main, ["encode", "--model", "tiny", "-j", "2", "--out-dir", str(enc), "--json", *srcs])
    assert r.exit_code == 1 and "broken.png" in r.output
    r = runner.invoke(main, ["decode", "-j", "2", "--out-dir", str(tmp_path / "dec"), *map(str, enc.iterdir())])
    assert r.exit_code == 0, r.output
    for name, img in images.items():
        assert np.array_equal(np.asarray(Image.open(tmp_path / "dec" / name)), img)


def test_decompression_bomb_limit_is_kept_and_can_be_lifted(runner, tmp_path):
    src = tmp_path / "wide.png"
    Image.fromarray(photo_like(40, 50, 3)).save(src)
    old = Image.MAX_IMAGE_PIXELS
    try:
        r = runner.invoke(main, ["encode", "--model", "tiny", "--max-pixels", "500", str(src)])
        assert r.exit_code == 1 and "decompression-bomb limit" in r.output and not (tmp_path / "wide.nfc").exists()
        r = runner.invoke(main, ["encode", "--model", "tiny", "--max-pixels", "0", str(src)])
        assert r.exit_code == 0 and (tmp_path / "wide.nfc").exists()
    finally:
        Image.MAX_IMAGE_PIXELS = old
