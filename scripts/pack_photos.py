"""Pack training photos and validation sets small enough to travel to a lent GPU machine.

Photos above --max-mp are cut to a centred crop on JPEG's 16-pixel grid and re-saved with
their own quantisation tables; the rest are copied byte for byte. The validation sets are saved
as the .npz that `nfcompress train --val` reads.
"""

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from nfcompress.data import eval_sets, list_images, split_heldout


def main() -> None:
    """Write <out>/train/*.jpg and <out>/val.npz, printing the total size."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-mp", type=float, default=2.0)
    ap.add_argument("--holdout", action="append", default=[])
    a = ap.parse_args()
    out = Path(a.out)
    (out / "train").mkdir(parents=True, exist_ok=True)
    limit = a.max_mp * 1e6
    for p in split_heldout(list_images([a.train]), a.holdout)[0]:
        dst = out / "train" / p.name
        with Image.open(p) as im:
            w, h = im.size
            if w * h <= limit:
                shutil.copyfile(p, dst)
                continue
            scale = (limit / (w * h)) ** 0.5
            cw, ch = int(w * scale) // 16 * 16, int(h * scale) // 16 * 16
            x0, y0 = (w - cw) // 32 * 16, (h - ch) // 32 * 16
            tables = getattr(im, "quantization", None)
            sampling = JpegImagePlugin.get_sampling(im) if tables else -1
            crop = im.crop((x0, y0, x0 + cw, y0 + ch)).convert("RGB")
            opts = {"qtables": tables, "subsampling": sampling} if tables else {"quality": 95}
            crop.save(dst, "JPEG", **opts)
    sets = eval_sets(list_images([a.val]), per_photo=4)
    np.savez_compressed(out / "val.npz", **sets)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
