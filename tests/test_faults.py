"""Faults: interrupts, failing writes, many files with a bad one, parallel workers, size limits."""

import errno
import hashlib
import json
import os
import signal
import stat
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


def _catches_sigterm(pid: int) -> bool:
    """Whether process pid has a handler for SIGTERM (Linux: the caught-signals mask in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return bool(caught >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the handler's mask in /proc")
@pytest.mark.parametrize("delay", [0.0, 2.0])  # after the handler is set (imports still running), and while coding
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
    # A loaded machine can take longer than any fixed wait to reach the handler: wait for it.
    deadline = time.monotonic() + 60
    while p.poll() is None and not _catches_sigterm(p.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert p.poll() is None and _catches_sigterm(p.pid), "the command never set its SIGTERM handler"
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert "Traceback" not in err
    names = sorted(x.name for x in tmp_path.iterdir())
    assert not any(n.endswith(".part") for n in names)
    if p.returncode == 0:  # it finished before the signal: the output must then be whole
        assert (tmp_path / "big.nfc").read_bytes()[:3] == b"NFC"
    else:  # stopped by the handler, which is set before torch is imported: never killed outright (-15)
        assert names == ["big.png"] and p.returncode == 130
        assert err.strip().splitlines() == ["error: interrupted; no partial output was left"]
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("coder", ["flow", "auto"])
def test_parallel_workers_code_every_file_exactly(runner, tmp_path, coder):
    images = {f"im{i}.png": photo_like(12 + i, 20 + 2 * i, 3, seed=i) for i in range(5)}
    for name, img in images.items():
        Image.fromarray(img).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    srcs = [str(tmp_path / n) for n in [*images, "broken.png"]]
    enc = tmp_path / "enc"
    args = ["encode", "--model", "tiny", "--coder", coder, "-j", "2", "--out-dir", str(enc), "--json", *srcs]
    r = runner.invoke(main, args)
    assert r.exit_code == 1 and "broken.png" in r.output
    records = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert len(records) == 5 and (coder == "auto" or {rec["coder"] for rec in records} == {coder})
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


def _worker_settings(pairs: list[tuple[str, str]]) -> list[dict]:
    """A job for run_jobs: what the worker process it runs in was given (the thread count as the
    flow, which loads torch only when a file needs it, runs with)."""
    import torch

    import nfcompress.coders.flow.coder  # noqa: F401

    return [{"threads": torch.get_num_threads(), "max_pixels": Image.MAX_IMAGE_PIXELS} for _ in pairs]


def test_workers_take_the_thread_count_and_pixel_limit_they_are_given():
    from nfcompress.batch import run_jobs

    jobs = [(f"in{i}", f"out{i}") for i in range(4)]
    got = [r for _, r in run_jobs(_worker_settings, jobs, 2, threads=1, max_pixels=1234)]
    assert got == [{"threads": 1, "max_pixels": 1234}] * 4
    got = [r for _, r in run_jobs(_worker_settings, jobs, 2, threads=3, max_pixels=0)]
    assert got == [{"threads": 3, "max_pixels": None}] * 4  # 0 lifts the limit


def test_the_pixel_limit_holds_in_worker_processes(runner, tmp_path):
    srcs = []
    for i in range(2):
        srcs.append(str(tmp_path / f"wide{i}.png"))
        Image.fromarray(photo_like(40, 50, 3, seed=i)).save(srcs[-1])
    old = Image.MAX_IMAGE_PIXELS
    try:
        r = runner.invoke(main, ["encode", "-j", "2", "--threads", "1", "--max-pixels", "500", *srcs])
    finally:
        Image.MAX_IMAGE_PIXELS = old
    assert r.exit_code == 1 and r.output.count("decompression-bomb limit of 500 pixels") == 2
    assert not list(tmp_path.glob("*.nfc"))


@pytest.mark.parametrize("umask, want", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_permissions_the_umask_allows(tmp_path, umask, want):
    old = os.umask(umask)
    try:
        nio.atomic_write(tmp_path / "new.nfc", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.nfc").stat().st_mode) == want


def test_a_replaced_output_keeps_its_permissions(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    nio.atomic_write(target, b"new", force=True)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_the_command_line_writes_files_as_cp_would(runner, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(photo_like(8, 8, 3)).save(src)
    old = os.umask(0o022)
    try:
        assert runner.invoke(main, ["encode", str(src)]).exit_code == 0
        assert runner.invoke(main, ["decode", str(tmp_path / "a.nfc"), "-o", str(tmp_path / "b.png")]).exit_code == 0
    finally:
        os.umask(old)
    assert [stat.S_IMODE((tmp_path / n).stat().st_mode) for n in ("a.nfc", "b.png")] == [0o644, 0o644]


def test_an_interruption_wrapped_by_a_class_body_still_exits_with_one_line(runner, monkeypatch):
    """Python wraps an exception raised in __set_name__ (a signal landing while torch defines a
    class) in a RuntimeError: the CLI must still see the interruption."""
    from nfcompress import cli
    from nfcompress.batch import Interrupted

    class Late:
        def __set_name__(self, owner, name):
            raise Interrupted()

    def importing_torch(*a, **k):
        type("Interpreter", (), {"attr": Late()})

    monkeypatch.setattr(cli, "_code_files", importing_torch)
    r = runner.invoke(main, ["encode", "x.png"])
    assert r.exit_code == 130 and r.output.strip() == "error: interrupted; no partial output was left"


def test_sigterm_inside_an_import_is_raised_once_the_import_is_done(tmp_path):
    # torch's C++ code aborts the process where an exception crosses it during its import.
    (tmp_path / "slow_module.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(0.2)\nDONE = True\n"
    )
    code = (
        "import sys, time\n"
        "from nfcompress.batch import Interrupted, catch_sigterm\n"
        "catch_sigterm()\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "try:\n"
        "    import slow_module\n"
        "    time.sleep(5)\n"
        "except Interrupted:\n"
        "    print('interrupted after the import:', slow_module.DONE)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout.strip()) == (0, "interrupted after the import: True"), p.stderr
