"""Stress run: hundreds of images of mixed sizes and modes through the CLI, all checked exact.

    python scripts/stress.py [COUNT] [JOBS]

Prints the count, the totals, the wall time and the peak memory of the worker processes.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).parent.parent / "examples"
MODES = ["RGB", "RGB", "RGB", "L", "RGBA", "LA", "P"]


def make_images(folder: Path, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Crops, resizes and mode changes of the example images, 1x1 up to about 600x600."""
    rng = np.random.default_rng(seed)
    bases = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(EXAMPLES.glob("*.png"))]
    want = {}
    for i in range(count):
        base = Image.fromarray(bases[i % len(bases)])
        side = int(np.exp(rng.uniform(0, np.log(600))))
        w, h = max(1, side), max(1, int(side * rng.uniform(0.5, 1.5)))
        im = base.resize((w, h), Image.BOX if rng.random() < 0.5 else Image.BICUBIC)
        mode = MODES[i % len(MODES)]
        im = im.quantize(64) if mode == "P" else im.convert(mode)
        name = f"s{i:04d}.png"
        im.save(folder / name)
        want[name] = np.asarray(
            im.convert("RGBA" if mode == "P" and "transparency" in im.info else ("RGB" if mode == "P" else mode))
        )
    return want


def main(count: int = 300, jobs: int = 2) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        want = make_images(root / "in", count)
        cmd = [sys.executable, "-m", "nfcompress"]
        t = time.perf_counter()
        enc = subprocess.run(
            [
                *cmd,
                "encode",
                "-j",
                str(jobs),
                "--json",
                "--out-dir",
                str(root / "nfc"),
                *map(str, sorted((root / "in").iterdir())),
            ],
            capture_output=True,
            text=True,
        )
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        dec = subprocess.run(
            [
                *cmd,
                "decode",
                "-j",
                str(jobs),
                "--out-dir",
                str(root / "out"),
                *map(str, sorted((root / "nfc").iterdir())),
            ],
            capture_output=True,
            text=True,
        )
        t_dec = time.perf_counter() - t
        if enc.returncode or dec.returncode:
            sys.exit(f"failed:\n{enc.stderr}\n{dec.stderr}")
        recs = [json.loads(line) for line in enc.stdout.splitlines()]
        bad = [n for n, a in want.items() if not np.array_equal(np.asarray(Image.open(root / "out" / n)), a)]
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        sub = sum(a.size for a in want.values())
        print(
            json.dumps(
                {
                    "images": count,
                    "jobs": jobs,
                    "exact": count - len(bad),
                    "not_exact": bad,
                    "subpixels": sub,
                    "bytes": sum(r["bytes"] for r in recs),
                    "encode_s": round(t_enc, 1),
                    "decode_s": round(t_dec, 1),
                    "peak_rss_mb_per_process": round(peak_mb),
                }
            )
        )
        if bad:
            sys.exit(1)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
