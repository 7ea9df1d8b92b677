"""Learn the screen model's prior (nfcompress/coders/screen/prior.safetensors and its card) from
screenshots, whole handbooks held out, and measure it on them. Run from the repository root:

    python scripts/train_screen_prior.py ../shared/data/screens

The file's sha256, printed at the end, is what a payload version pins (`model._PRIOR_12`): a new
prior is a new payload version, since decoders must start from the counts encoders started from.
"""

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

import nfcompress
from nfcompress.classical import encode_classical
from nfcompress.coders.screen import model, prior

HELD_OUT = ("gwenview", "kcharselect", "krdc", "ktnef")


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("screens", type=Path, help="a folder of <handbook>--<name>.png screenshots")
    ap.add_argument("--held-out", default=",".join(HELD_OUT), help="handbooks left out of training")
    args = ap.parse_args()
    held = tuple(args.held_out.split(","))
    files = sorted(args.screens.glob("*.png"))
    train = [f for f in files if not f.name.startswith(tuple(h + "--" for h in held))]
    test = [f for f in files if f not in train]
    total, subpixels = None, 0
    for k, f in enumerate(train):
        pixels = _rgb(f)
        occ = model.occurrences(pixels)
        total = occ if total is None else {name: total[name] + occ[name] for name in occ}
        subpixels += pixels.size
        print(f"\r{k + 1}/{len(train)} training screenshots", end="", flush=True)
    print()
    counts = prior.from_occurrences(total)
    card = {
        "model": "screen model prior: the counts each context starts from",
        "payload_scheme": max(model.SCHEMES),
        "mass": prior.MASS,
        "data": {
            "folder": str(args.screens),
            "images": len(train),
            "subpixels": subpixels,
            "handbooks": sorted({f.name.split("--")[0] for f in train}),
            "handbooks_held_out": list(held),
        },
        "steps": "one pass of the encoder over every training image, counts summed",
        "hardware": "CPU",
        "written_by": f"nfcompress {nfcompress.__version__}",
    }
    digest = prior.save(counts, card)
    learned, uniform = replace(model.SCHEME, prior=digest), replace(model.SCHEME, prior="")
    sizes = {"with_prior": 0, "without_prior": 0, "webp_m6": 0}
    held_subpixels = 0
    for f in test:
        pixels = _rgb(f)
        sizes["with_prior"] += len(model.encode(pixels, learned)[0])
        sizes["without_prior"] += len(model.encode(pixels, uniform)[0])
        sizes["webp_m6"] += len(encode_classical("webp", pixels)[0])
        held_subpixels += pixels.size
    card["measured"] = {
        "held_out": {"images": len(test), "subpixels": held_subpixels}
        | {f"{k}_bpsp": round(8 * v / held_subpixels, 4) for k, v in sizes.items()},
    }
    digest = prior.save(counts, card)
    print(card["measured"])
    print(f"sha256 {digest}: pin it in nfcompress/coders/screen/model.py (_PRIOR_12)")


if __name__ == "__main__":
    main()
