"""Markdown tables from `nfcompress bench --json` output: bpsp per folder and codec, then speeds.

python scripts/figures_table.py cache/figures/val.jsonl
"""

import json
import sys
from pathlib import Path


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    folders = list(dict.fromkeys(r["folder"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    get = {(r["folder"], r["codec"]): r for r in rows}
    print("| images | " + " | ".join(codecs) + " | nfcompress ideal | vs JPEG XL |")
    print("|---|" + "---:|" * (len(codecs) + 2))
    for f in folders:
        n = get[(f, codecs[0])]
        cells = [f"{get[(f, c)]['bpsp']:.3f}" for c in codecs]
        nfc, jxl = get[(f, "nfcompress")]["bpsp"], get.get((f, "jxl"), {}).get("bpsp")
        vs = f"{100 * (nfc / jxl - 1):+.1f}%" if jxl else ""
        print(
            f"| {Path(f).name} ({n['images']}) | "
            + " | ".join(cells)
            + f" | {get[(f, 'nfcompress')]['ideal_bpsp']:.3f} | {vs} |"
        )
    print()
    print("| images | " + " | ".join(f"{c} enc / dec Msub/s" for c in codecs) + " |")
    print("|---|" + "---:|" * len(codecs))
    for f in folders:
        cells = [f"{get[(f, c)]['encode_msubs']:.3g} / {get[(f, c)]['decode_msubs']:.3g}" for c in codecs]
        print(f"| {Path(f).name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
