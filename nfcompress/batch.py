"""Files in, files out: the jobs behind `encode` and `decode`, inline or in worker processes.

Small images are coded in groups, which share the network's runs; every file still gets its own
file, record and verdict.
"""

__all__ = [
    "Interrupted",
    "read_input",
    "encode_files",
    "decode_files",
    "run_jobs",
    "grouped",
    "image_pixels",
    "nfc_pixels",
    "catch_sigterm",
    "configure",
    "worker_pool",
    "named_error",
]

import atexit
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

import numpy as np

from nfcompress.coders.flow.orientation import DEFAULT_EFFORT
from nfcompress.container import Header
from nfcompress.errors import NfcError

# Workers start fresh: a forked child of a process whose torch and table threads are running
# can inherit a held lock and hang.
_SPAWN = multiprocessing.get_context("spawn")
# Images of at most SMALL pixels are coded together, GROUP files at most.
SMALL = 256 * 256
GROUP = 64
REDELIVER_S = 0.05  # how soon SIGTERM comes again when it landed inside an import
T = TypeVar("T")


class Interrupted(BaseException):
    """SIGTERM, raised where the process is, so every cleanup handler runs."""


def _raise_interrupted(signum, frame):
    if _importing(frame):
        # Raised inside an import, the exception can cross torch's C++ code, which then aborts the
        # process (SIGABRT, no cleanup): the signal comes again once the import is done.
        again = threading.Timer(REDELIVER_S, os.kill, (os.getpid(), signum))
        again.daemon = True
        again.start()
        return
    raise Interrupted()


def _importing(frame) -> bool:
    """Whether a frame runs inside an import (its callers include importlib's machinery)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


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


def named_error(src: str, e: NfcError) -> NfcError:
    """The error with the input it concerns at its head (once)."""
    msg = str(e)
    return e if msg.startswith(f"{src}:") else type(e)(f"{src}: {msg}")


def grouped(
    items: Iterable[T],
    pixels: Callable[[T], int],
    key: Callable[[T], object] = lambda item: None,
    size: int = GROUP,
) -> Iterator[list[T]]:
    """Items in groups to code together: a large image alone, small ones of a key `size` at a time.

    Lazy: a group is yielded as soon as it is full, so images can be loaded as they are needed.
    """
    pending: dict[object, list[T]] = {}
    for item in items:
        if pixels(item) > SMALL:
            yield [item]
            continue
        group = pending.setdefault(key(item), [])
        group.append(item)
        if len(group) >= size:
            yield pending.pop(key(item))
    yield from pending.values()


def image_pixels(src: str) -> int:
    """An image file's pixel count from its header (more than SMALL where it cannot be read: alone)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # load_image says what is wrong with it, once
            with Image.open(src) as im:
                return im.width * im.height
    except (OSError, ValueError, Image.DecompressionBombError):
        return SMALL + 1


def nfc_pixels(src: str) -> int:
    """An .nfc file's pixel count from its header (more than SMALL for large or unreadable files: alone)."""
    from nfcompress.container import unpack

    try:
        if src == "-" or Path(src).stat().st_size > 1 << 20:
            return SMALL + 1
        header = unpack(Path(src).read_bytes())[0]
    except (OSError, NfcError):
        return SMALL + 1
    return header.width * header.height


def _written(src: str, dst: str, data: bytes | NfcError, force: bool) -> NfcError | None:
    """Write one output atomically, or take the error that stopped it; the error, named for its input."""
    try:
        if isinstance(data, NfcError):
            raise data
        _write(dst, data, force)
    except NfcError as e:
        return named_error(src, e)
    return None


def _group_time(t: float, pixels: int, total: int) -> float:
    """A file's share, by its pixels, of the seconds its group took."""
    return round((time.perf_counter() - t) * pixels / max(total, 1), 3)


def encode_files(
    pairs: list[tuple[str, str]],
    *,
    model: str = "",
    device: str = "cpu",
    force: bool = False,
    verify: bool = True,
    effort: int = DEFAULT_EFFORT,
    portable: bool | None = None,
    coder: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict | NfcError]:
    """Encode image files to .nfc files, each checked by decoding it and written atomically.

    Small images are coded together (the same bytes as one at a time, faster). Each file gets
    its record, or the NfcError that stopped it.
    """
    from nfcompress.api import get_codec
    from nfcompress.io import load_image

    results: list[dict | NfcError | None] = [None] * len(pairs)

    def code(group: list[tuple[int, np.ndarray]]) -> None:
        t = time.perf_counter()
        try:
            codec = get_codec(model, device)
            images = [p for _, p in group]
            coded = codec.encode_many(
                images, progress=progress, effort=effort, portable=portable, coder=coder, keep=verify
            )
            back = codec.verify_many(coded) if verify else [p for _, p in group]
        except NfcError as e:
            if len(group) > 1:  # one image's fault: find whose
                for item in group:
                    code([item])
                return
            results[group[0][0]] = named_error(pairs[group[0][0]][0], e)
            return
        total = sum(p.size for _, p in group)
        for (i, pixels), res, out in zip(group, coded, back):
            src, dst = pairs[i]
            why = out if isinstance(out, NfcError) else "the decoded image differs"
            exact = not isinstance(out, NfcError) and np.array_equal(out, pixels)
            failed = NfcError(f"verification failed ({why}); nothing written")
            error = _written(src, dst, res.data if exact else failed, force)
            results[i] = error or {
                "input": src,
                "output": dst,
                "bytes": len(res.data),
                "bpsp": round(res.bpsp, 4),
                "ideal_bpsp": round(res.ideal_bpsp, 4),
                "effort": effort,
                "portable": res.portable,
                "coder": res.coder,
                "seconds": _group_time(t, pixels.size, total),
                "width": int(pixels.shape[1]),
                "height": int(pixels.shape[0]),
            }

    def loaded() -> Iterator[tuple[int, np.ndarray]]:
        for i, (src, dst) in enumerate(pairs):
            try:
                _check_free(dst, force)
                yield i, load_image(read_input(src) if src == "-" else src)
            except NfcError as e:
                results[i] = named_error(src, e)

    for group in grouped(loaded(), lambda item: item[1].shape[0] * item[1].shape[1]):
        code(group)
    return results


def decode_files(
    pairs: list[tuple[str, str]],
    *,
    model: str = "",
    device: str = "cpu",
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict | NfcError]:
    """Decode .nfc files to PNGs, exact or an error each, written atomically; small ones together."""
    from nfcompress.api import get_codec
    from nfcompress.container import unpack
    from nfcompress.io import image_to_png_bytes

    results: list[dict | NfcError | None] = [None] * len(pairs)

    def code(group: list[tuple[int, bytes, Header, str | None]]) -> None:
        t = time.perf_counter()
        try:
            if group[0][3] is None:  # files of model-free payloads: no model to load
                outs = _model_free_pixels([item[1] for item in group], progress if len(group) == 1 else None)
            else:
                outs = get_codec(group[0][3], device).decode_many([item[1] for item in group], progress=progress)
        except NfcError as e:
            outs = [e] * len(group)
        total = sum(item[2].width * item[2].height for item in group)
        for (i, data, header, _), pixels in zip(group, outs):
            src, dst = pairs[i]
            error = _written(src, dst, pixels if isinstance(pixels, NfcError) else image_to_png_bytes(pixels), force)
            results[i] = error or {
                "input": src,
                "output": dst,
                "bytes": len(data),
                "bpsp": round(8 * len(data) / pixels.size, 4),
                "ideal_bpsp": None,
                "seconds": _group_time(t, header.width * header.height, total),
                "width": header.width,
                "height": header.height,
                "mode": header.mode,
            }

    def read() -> Iterator[tuple[int, bytes, Header, str | None]]:
        """Each readable file with its header and the name of the model it decodes with (None: a
        model-free payload, which needs none)."""
        for i, (src, dst) in enumerate(pairs):
            try:
                _check_free(dst, force)
                data = read_input(src)
                header = unpack(data)[0]
                yield i, data, header, None if header.model_free else model or _model_of(header)
            except NfcError as e:
                results[i] = named_error(src, e)

    for group in grouped(read(), lambda item: item[2].width * item[2].height, lambda item: item[3]):
        code(group)
    return results


def _model_of(header: Header) -> str:
    """The model a flow file needs (the flow's weights module imports torch: only flow files do)."""
    from nfcompress.weights import model_of

    return model_of(header)


def _model_free_pixels(datas: list[bytes], progress: Callable[[int, int], None] | None) -> list[np.ndarray | NfcError]:
    """The pixels of files of model-free payloads, or for each the NfcError that says why not."""
    from nfcompress.codec import decode_model_free_many
    from nfcompress.container import unpack

    out: list[np.ndarray | NfcError | None] = [None] * len(datas)
    parsed = {}
    for n, data in enumerate(datas):
        try:
            parsed[n] = unpack(data)
        except NfcError as e:
            out[n] = e
    for n, pixels in zip(parsed, decode_model_free_many(list(parsed.values()), progress)):
        out[n] = pixels
    return out


def configure(threads: int = 0, max_pixels: int | None = None) -> None:
    """A process's settings for coding: torch's thread count (0 keeps torch's default) and Pillow's
    decompression-bomb limit (None keeps Pillow's, 0 lifts it). Every flow coder flushes
    subnormals itself. Torch is not imported here (nfcompress.threads)."""
    from nfcompress.io import set_max_pixels
    from nfcompress.threads import set_threads

    if threads:
        set_threads(threads)
    if max_pixels is not None:
        set_max_pixels(max_pixels or None)


def _worker_init(threads: int, max_pixels: int | None) -> None:
    catch_sigterm()
    configure(threads, max_pixels)
    # A worker's results are sent and its files written before it is told to stop: it leaves
    # without tearing the interpreter down (0.1 s a worker, which the pool waits for).
    atexit.register(_leave)


def _leave() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _started() -> None:
    """Nothing: a job that makes a pool start a worker while the jobs are being sized."""


def worker_pool(workers: int, threads: int = 0, max_pixels: int | None = None) -> ProcessPoolExecutor:
    """A pool of fresh worker processes, each set up as `configure` does (threads 0: the CPU's
    threads shared among the workers)."""
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(workers, mp_context=_SPAWN, initializer=_worker_init, initargs=(threads, max_pixels))


def _groups(
    jobs: list[tuple[str, str]], workers: int, pixels: Callable[[str], int] | None
) -> list[list[tuple[str, str]]]:
    """The jobs in groups (`grouped`), the largest first: small images at most GROUP together, as
    many groups as a multiple of the workers, so that each worker gets as many images, and no
    worker is left with a large image while the others idle."""
    rounds = max(1, -(-len(jobs) // (max(workers, 1) * GROUP)))
    size = max(1, -(-len(jobs) // (max(workers, 1) * rounds)))
    sizes = {src: pixels(src) if pixels else SMALL + 1 for src, _ in jobs}
    groups = list(grouped(jobs, lambda job: sizes[job[0]], size=size))
    return sorted(groups, key=lambda group: -sum(sizes[src] for src, _ in group)) if workers > 1 else groups


def run_jobs(
    fn: Callable[..., list[dict | NfcError]],
    jobs: list[tuple[str, str]],
    workers: int,
    pixels: Callable[[str], int] | None = None,
    threads: int = 0,
    max_pixels: int | None = None,
    **kw,
) -> Iterator[tuple[str, dict | NfcError]]:
    """Run fn(pairs, **kw) over groups of the jobs; yields (src, record or NfcError) for every job.

    `pixels(src)` sizes an input: small ones go to `fn` in groups (at most GROUP, and spread
    over the workers), the rest one at a time. With workers > 1 the groups run, the largest
    first, in a pool of processes, each with `threads` threads (0: the CPU's shared among them)
    and Pillow's limit `max_pixels` (as `configure` takes it); results come in the order groups
    finish. A job's NfcError is yielded, not raised, so the others go on.
    """
    if workers <= 1:
        for group in _groups(jobs, workers, pixels):
            yield from zip([src for src, _ in group], fn(group, **kw))
        return
    with worker_pool(workers, threads, max_pixels) as pool:
        # The workers start (a second or so) while the inputs are sized.
        for _ in range(min(workers, len(jobs))):
            pool.submit(_started)
        pending = {pool.submit(fn, group, **kw): group for group in _groups(jobs, workers, pixels)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield from zip([src for src, _ in pending.pop(f)], f.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
