"""One file in, one file out: the jobs behind `encode` and `decode`, inline or in worker processes."""

__all__ = ["Interrupted", "read_input", "encode_file", "decode_file", "run_jobs", "catch_sigterm"]

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from nfcompress.errors import NfcError
from nfcompress.orientation import DEFAULT_EFFORT

# Workers start fresh: a forked child of a process whose torch and table threads are running
# can inherit a held lock and hang.
_SPAWN = multiprocessing.get_context("spawn")


class Interrupted(BaseException):
    """SIGTERM, raised where the process is, so every cleanup handler runs."""


def _raise_interrupted(signum, frame):
    raise Interrupted()


def catch_sigterm() -> None:
    """Turn SIGTERM into `Interrupted`: no output is left half-written when a job is killed."""
    signal.signal(signal.SIGTERM, _raise_interrupted)


def read_input(src: str) -> bytes:
    """The bytes of a file, or of stdin for '-', with one-line errors."""
    if src == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(src).read_bytes()
    except FileNotFoundError:
        raise NfcError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise NfcError(f"{src}: is a folder") from None
    except OSError as e:
        raise NfcError(f"{src}: cannot read ({e.strerror})") from None


def _write(dst: str, data: bytes, force: bool) -> None:
    from nfcompress.io import atomic_write

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(Path(dst), data, force=force)


def _check_free(dst: str, force: bool) -> None:
    if dst != "-" and Path(dst).exists() and not force:
        raise NfcError(f"{dst}: already exists (use --force to overwrite)")


def _named(src: str, e: NfcError) -> NfcError:
    msg = str(e)
    return e if msg.startswith(f"{src}:") else type(e)(f"{src}: {msg}")


def encode_file(
    src: str,
    dst: str,
    *,
    model: str = "",
    device: str = "cpu",
    force: bool = False,
    verify: bool = True,
    effort: int = DEFAULT_EFFORT,
    portable: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Encode one image file to one .nfc file, checked by decoding it, written atomically."""
    from nfcompress.api import get_codec
    from nfcompress.io import load_image

    try:
        _check_free(dst, force)
        t = time.perf_counter()
        codec = get_codec(model, device)
        pixels = load_image(read_input(src) if src == "-" else src)
        res = codec.encode(pixels, progress=progress, effort=effort, portable=portable)
        if verify and not (codec.decode(res.data) == pixels).all():
            raise NfcError("verification failed, the decoded image differs; nothing written")
        _write(dst, res.data, force)
    except NfcError as e:
        raise _named(src, e) from None
    return {
        "input": src,
        "output": dst,
        "bytes": len(res.data),
        "bpsp": round(res.bpsp, 4),
        "ideal_bpsp": round(res.ideal_bpsp, 4),
        "effort": effort,
        "portable": res.portable,
        "seconds": round(time.perf_counter() - t, 3),
        "width": int(pixels.shape[1]),
        "height": int(pixels.shape[0]),
    }


def decode_file(
    src: str,
    dst: str,
    *,
    model: str = "",
    device: str = "cpu",
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Decode one .nfc file to one PNG, exact or an error, written atomically."""
    from nfcompress.api import get_codec
    from nfcompress.container import unpack
    from nfcompress.io import image_to_png_bytes

    try:
        _check_free(dst, force)
        t = time.perf_counter()
        data = read_input(src)
        header, _, _ = unpack(data)
        pixels = get_codec(model or header.model_name, device).decode(data, progress=progress)
        _write(dst, image_to_png_bytes(pixels), force)
    except NfcError as e:
        raise _named(src, e) from None
    return {
        "input": src,
        "output": dst,
        "bytes": len(data),
        "bpsp": round(8 * len(data) / pixels.size, 4),
        "ideal_bpsp": None,
        "seconds": round(time.perf_counter() - t, 3),
        "width": header.width,
        "height": header.height,
        "mode": header.mode,
    }


def _worker_init(threads: int) -> None:
    import torch

    catch_sigterm()
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)


def run_jobs(
    fn: Callable[..., dict], jobs: list[tuple[str, str]], workers: int, **kw
) -> Iterator[tuple[str, dict | NfcError]]:
    """Run fn(src, dst, **kw) for every job; yields (src, record or NfcError) as each finishes.

    With workers > 1 the jobs run in a pool of processes sharing the CPU threads; results come
    in the order they finish. A job's NfcError is yielded, not raised, so the others go on.
    """
    if workers <= 1:
        for src, dst in jobs:
            try:
                yield src, fn(src, dst, **kw)
            except NfcError as e:
                yield src, e
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=_SPAWN, initializer=_worker_init, initargs=(threads,)) as pool:
        pending = {pool.submit(fn, src, dst, **kw): src for src, dst in jobs}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    src = pending.pop(f)
                    try:
                        yield src, f.result()
                    except NfcError as e:
                        yield src, e
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
