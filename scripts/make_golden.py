"""Add files to the golden corpus (tests/data/golden/): small sources and the .nfc files this
nfcompress writes of them, one per payload kind, mode and odd size, with the hash of their pixels.

The corpus is evidence that grows: a file once committed is never rewritten, so every later
nfcompress on every machine CI meets must decode it. Run from the repository root:

    python scripts/make_golden.py            # adds what the manifest lacks (a new version's files
                                             # among them), keeps the rest
"""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import nfcompress
from nfcompress.container import unpack

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
EXAMPLES = ROOT / "examples"

# Where a re-encode of the source must give the same bytes: the flow at effort 1, the causal and
# the screen model compute every table in exact integer arithmetic. The others choose with floats (the
# linear model's least-squares fit, the JPEG-history search, effort 3's orientation search, auto's
# comparison of sizes), which another CPU may resolve otherwise into another valid file.
SAME_BYTES = {("flow", 1), ("causal", 1), ("screen", 1)}


def _sources() -> dict[str, Image.Image]:
    """Small images of every mode and some odd sizes, cut from the examples or drawn."""
    pizza = Image.open(EXAMPLES / "pizza-128.png").convert("RGB")
    nature = Image.open(EXAMPLES / "nature-thumb-64x48.png").convert("RGB")
    gray = Image.open(EXAMPLES / "nature-gray-80x60.png").convert("L")
    rgba = Image.open(EXAMPLES / "pizza-rgba-48x32.png").convert("RGBA")

    def once_jpeg(im: Image.Image, quality: int) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return Image.open(buf).convert(im.mode)

    palette = Image.new("P", (24, 16))
    palette.putpalette([0, 0, 0, 255, 255, 255, 200, 30, 30, 30, 90, 200] + [0] * 756)
    palette.putdata([(x // 6 + y // 4) % 4 for y in range(16) for x in range(24)])
    clear = palette.copy()
    clear.info["transparency"] = 2
    ui = Image.new("RGB", (90, 60), (239, 240, 241))
    draw = ImageDraw.Draw(ui)
    draw.rectangle((0, 0, 89, 12), fill=(49, 54, 59))
    draw.text((3, 1), "nfcompress", fill=(252, 252, 252))
    draw.rectangle((6, 20, 60, 34), outline=(120, 125, 130), fill=(255, 255, 255))
    draw.text((9, 22), "Save as...", fill=(35, 38, 41))
    draw.rectangle((64, 44, 86, 56), fill=(61, 174, 233))
    draw.text((68, 45), "OK", fill=(255, 255, 255))
    gray_alpha = gray.crop((30, 20, 49, 31)).convert("LA")
    gray_alpha.putalpha(rgba.getchannel("A").crop((10, 8, 29, 19)))
    return {
        "rgb-32x32": pizza.crop((40, 40, 72, 72)),
        "rgb-70x40": nature.crop((0, 0, 64, 40)).resize((70, 40), Image.Resampling.BOX),
        "rgb-37x23": nature.crop((5, 7, 42, 30)),
        "gray-29x21": gray.crop((10, 10, 39, 31)),
        "rgba-20x13": rgba.crop((3, 5, 23, 18)),
        "gray-alpha-19x11": gray_alpha,
        "palette-24x16": palette,
        "palette-alpha-24x16": clear,
        "rgb-1x1": pizza.crop((64, 64, 65, 65)),
        "gray-1x1": gray.crop((5, 5, 6, 6)),
        "jpeg-rgb-64x64": once_jpeg(pizza.crop((0, 0, 64, 64)), 75),
        "jpeg-gray-72x64": once_jpeg(pizza.convert("L").crop((32, 40, 104, 104)), 60),
        "ui-90x60": ui,
        "ui-gray-41x30": ui.convert("L").crop((2, 18, 43, 48)),
        "pizza-96x80": pizza.crop((16, 24, 112, 104)),
    }


# (source, coder, effort): every payload kind over the modes and sizes it takes.
ENTRIES = [
    *[(s, "flow", 1) for s in ("rgb-32x32", "rgb-70x40", "gray-29x21", "rgba-20x13", "palette-24x16", "rgb-1x1")],
    ("rgb-37x23", "flow", 3),
    *[(s, "linear", 1) for s in ("rgb-32x32", "rgb-37x23", "gray-29x21", "rgba-20x13", "palette-24x16", "gray-1x1")],
    ("jpeg-rgb-64x64", "linear", 1),
    ("jpeg-gray-72x64", "linear", 1),
    *[(s, "causal", 1) for s in ("rgb-32x32", "rgb-37x23", "rgba-20x13", "palette-alpha-24x16", "rgb-1x1")],
    *[(s, "causal", 1) for s in ("gray-29x21", "gray-alpha-19x11", "gray-1x1")],
    ("rgb-70x40", "auto", 1),
    ("gray-alpha-19x11", "flow", 1),
    ("gray-alpha-19x11", "linear", 1),
    *[(s, "screen", 1) for s in ("ui-90x60", "ui-gray-41x30", "palette-alpha-24x16", "rgb-37x23", "rgb-1x1")],
    ("ui-90x60", "auto", 1),
    *[(s, "adaptive", 1) for s in ("rgb-32x32", "rgb-37x23", "gray-29x21", "rgba-20x13", "gray-1x1", "pizza-96x80")],
]


def pixel_sha256(pixels: np.ndarray) -> str:
    """The hash the manifest keeps of an image: its shape, then its bytes."""
    return hashlib.sha256(repr(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes()).hexdigest()


def read_manifest() -> list[dict]:
    """The corpus's entries, one per .nfc file ([] before the first run)."""
    path = GOLDEN / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else []


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    manifest_path = GOLDEN / "manifest.json"
    manifest = read_manifest()
    have = {(e["source"], e["coder"], e["effort"], e["format_version"]) for e in manifest}
    sources = _sources()
    for name, coder, effort in ENTRIES:
        src = GOLDEN / f"{name}.png"
        if not src.exists():
            sources[name].save(src)
        pixels = nfcompress.load_image(src)
        data = nfcompress.encode(pixels, coder=coder, effort=effort)
        header = unpack(data)[0]
        if (src.name, coder, effort, header.version) in have:
            continue  # a file of this version is there: a new version of its kind adds one
        kind = header.kind
        how = coder if coder == kind else f"{coder}-{kind}"
        out = f"{name}.{how}{f'-e{effort}' if effort > 1 else ''}.v{header.version}.nfc"
        if (GOLDEN / out).exists():
            raise SystemExit(f"{out} exists but the manifest lacks it: a committed file is never rewritten")
        (GOLDEN / out).write_bytes(data)
        manifest.append(
            {
                "file": out,
                "source": src.name,
                "coder": coder,
                "effort": effort,
                "kind": kind,
                "format_version": header.version,
                "mode": header.mode,
                "pixels_sha256": pixel_sha256(pixels),
                "same_bytes": (coder, effort) in SAME_BYTES,
                "written_by": f"nfcompress {nfcompress.__version__}",
            }
        )
        print(f"{out}: {len(data)} bytes, {kind}")
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
