"""Fuzz the decoder: damaged copies of every golden file, decoded in-process.

Every damaged file must end in the project's own error (refused) or in exactly the pixels of an
image of the corpus (exact). Anything else is counted: a crash (any other exception), a hang
(over --timeout seconds) or a wrong image (pixels returned that no corpus image has). Run from
the repository root:

    python scripts/fuzz_decode.py --files 100000 --workers 2      # the long run
    python scripts/fuzz_decode.py --files 300 --json               # a short one

Exits 1 if anything crashed, hung or came back wrong; the damaged files that did are written to
--keep for a test to replay.
"""

import argparse
import json
import multiprocessing
import signal
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from make_golden import GOLDEN, pixel_sha256, read_manifest

MUTATIONS = ("flip", "flips", "truncate", "extend", "insert", "delete", "splice", "sizes", "payload", "chunks")


class Hang(Exception):
    """A decode ran past its time."""


@dataclass
class Tally:
    """What became of the damaged files."""

    tried: int = 0
    refused: int = 0
    exact: int = 0
    crashes: int = 0
    hangs: int = 0
    wrong: int = 0
    by_mutation: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)  # the payload kind of the file damaged
    failures: list = field(default_factory=list)  # (seed file, mutation, index, what happened)
    seconds: float = 0.0
    slowest: tuple = (0.0, "")  # the longest decode: seconds, and what the file declared

    def add(self, other: "Tally") -> None:
        for k in ("tried", "refused", "exact", "crashes", "hangs", "wrong", "seconds"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.by_mutation.update(other.by_mutation)
        self.by_kind.update(other.by_kind)
        self.failures += other.failures
        self.slowest = max(self.slowest, other.slowest)


def corpus() -> tuple[list[tuple[str, str, bytes]], set[str]]:
    """The golden files (name, payload kind, bytes) and the hashes of every image they hold."""
    manifest = read_manifest()
    files = [(e["file"], e["kind"], (GOLDEN / e["file"]).read_bytes()) for e in manifest]
    return files, {e["pixels_sha256"] for e in manifest}


def damage(data: bytes, other: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """A damaged copy of `data` (`other`, another golden file, for splices)."""
    from nfcompress.container import pack, unpack
    from nfcompress.errors import NfcError

    buf = bytearray(data)
    n = len(buf)
    if kind == "flip":
        i = int(rng.integers(n))
        buf[i] ^= 1 << int(rng.integers(8))
    elif kind == "flips":
        for i in rng.integers(0, n, int(rng.integers(2, 20))):
            buf[int(i)] = int(rng.integers(256))
    elif kind == "truncate":
        del buf[int(rng.integers(n)) :]
    elif kind == "extend":
        buf += rng.bytes(int(rng.integers(1, 64)))
    elif kind == "insert":
        i = int(rng.integers(n + 1))
        buf[i:i] = rng.bytes(int(rng.integers(1, 16)))
    elif kind == "delete":
        i = int(rng.integers(n))
        del buf[i : i + int(rng.integers(1, 16))]
    elif kind == "splice":
        buf = buf[: int(rng.integers(n + 1))] + other[int(rng.integers(len(other) + 1)) :]
    else:  # damage behind a header that parses: sizes, a payload byte, the chunks
        header, chunks, alpha = unpack(data)  # every golden file parses; pack writes it as this version
        if kind == "sizes":
            hostile = [0, 1, 2, 7, 8, 9, 63, 64, 65, 1 << 14, 1 << 16, (1 << 28) + 1, (1 << 31) - 1]
            header.width = int(rng.choice(hostile)) or header.width
            header.height = int(rng.choice(hostile)) if rng.random() < 0.7 else header.height
            header.tile = int(rng.choice([header.tile, 0, 1, 8, 16, 1 << 15]))
            header.batch = int(rng.choice([header.batch, 0, 1, 1 << 20]))
        elif kind == "payload":
            i = int(rng.integers(len(chunks)))
            c = bytearray(chunks[i])
            if c:
                c[int(rng.integers(len(c)))] ^= int(rng.integers(1, 256))
            if rng.random() < 0.3:
                del c[int(rng.integers(len(c) + 1)) :]
            chunks[i] = bytes(c)
        else:
            if rng.random() < 0.5 and len(chunks) > 1:
                chunks = chunks[::-1] if rng.random() < 0.5 else chunks[:-1]
            else:
                chunks = chunks + [rng.bytes(int(rng.integers(0, 40)))]
            if rng.random() < 0.3:
                alpha = rng.bytes(int(rng.integers(0, 40)))
        try:
            return pack(header, chunks, alpha)
        except (NfcError, ValueError, OverflowError, struct.error):
            return bytes(buf)  # a header pack refuses to write: the file undamaged, which must decode exactly
    return bytes(buf)


def _declared(data: bytes) -> str:
    """What a file's header declares, in words, for the report."""
    from nfcompress.container import unpack
    from nfcompress.errors import NfcError

    try:
        h = unpack(data)[0]
    except NfcError:
        return "no valid header"
    return f"{h.kind} {h.mode} {h.width}x{h.height}, {len(data)} bytes"


def _on_alarm(signum, frame):
    raise Hang()


def run(start: int, stop: int, seed: int = 0, timeout: float = 300.0, keep: Path | None = None) -> Tally:
    """Damage and decode files start..stop-1 (each file's damage drawn from (seed, index))."""
    import nfcompress
    from nfcompress.errors import NfcError

    files, known = corpus()
    signal.signal(signal.SIGALRM, _on_alarm)
    tally = Tally()
    t0 = time.perf_counter()
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        name, payload, data = files[i % len(files)]
        kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        bad = damage(data, files[int(rng.integers(len(files)))][2], kind, rng)
        tally.tried += 1
        tally.by_mutation[kind] += 1
        tally.by_kind[payload] += 1
        outcome = None
        t = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            pixels = nfcompress.decode(bad)
        except NfcError as e:
            outcome = "refused" if str(e) and "\n" not in str(e) else "crashes"
        except Hang:
            outcome = "hangs"
        except Exception as e:  # what the fuzz exists to find
            outcome, why = "crashes", f"{type(e).__name__}: {e}"
        else:
            outcome = "exact" if pixel_sha256(np.asarray(pixels)) in known else "wrong"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if time.perf_counter() - t > tally.slowest[0]:
            tally.slowest = (round(time.perf_counter() - t, 2), f"{i}-{kind}-{name}: {_declared(bad)}")
        setattr(tally, outcome, getattr(tally, outcome) + 1)
        if outcome in ("crashes", "hangs", "wrong"):
            tally.failures.append((name, kind, i, outcome if outcome != "crashes" else why))
            if keep:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"{i}-{kind}-{name}").write_bytes(bad)
    tally.seconds = time.perf_counter() - t0
    return tally


def _job(args: tuple) -> Tally:
    return run(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds one decode may take (a forged size that a short payload can hold is a real image "
        "of that size: a 1x16384 causal strip or a 9x65536 linear one takes 30-50 s to decode legitimately)",
    )
    ap.add_argument("--keep", type=Path, default=None, help="folder for the files that failed")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    step = 250
    jobs = [(s, min(s + step, a.files), a.seed, a.timeout, a.keep) for s in range(0, a.files, step)]
    total = Tally()
    t0 = time.perf_counter()
    if a.workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(a.workers, initializer=_worker_init) as pool:
            for t in pool.imap_unordered(_job, jobs):
                total.add(t)
                print(f"\r{total.tried}/{a.files} files", end="", file=sys.stderr, flush=True)
    else:
        for job in jobs:
            total.add(run(*job))
    print("", file=sys.stderr)
    record = {
        "files": total.tried,
        "refused": total.refused,
        "exact": total.exact,
        "crashes": total.crashes,
        "hangs": total.hangs,
        "wrong": total.wrong,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "slowest_decode": list(total.slowest),
        "by_mutation": dict(sorted(total.by_mutation.items())),
        "by_payload_kind": dict(sorted(total.by_kind.items())),
        "failures": total.failures[:50],
    }
    print(json.dumps(record) if a.json else "\n".join(f"{k}: {v}" for k, v in record.items()))
    sys.exit(1 if total.crashes or total.hangs or total.wrong else 0)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


if __name__ == "__main__":
    main()
