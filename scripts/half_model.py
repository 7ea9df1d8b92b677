"""Store a model's weights in float16 under a name: the rounded weights, and a card that keeps the
training record but drops the calibration and figures of the unrounded weights. Then run
scripts/calibrate_exact.py and scripts/measure_card.py on the output.

    python scripts/half_model.py runs/cpu7/nfc-small-2.safetensors models/nfc-small-2.safetensors
"""

import argparse
from pathlib import Path

from nfcompress.weights import load_model, round_to_half, save_model


def main() -> None:
    """Round SRC to float16 and write it (and its card) to DST."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", help="the trained .safetensors weights")
    ap.add_argument("dst", help="where the float16 weights go (.safetensors; the card beside)")
    ap.add_argument("--name", default="", help="the model's name (default: its card's)")
    a = ap.parse_args()
    model, card = load_model(Path(a.src))
    round_to_half(model)
    card.name = a.name or card.name
    card.exact, card.metrics = {}, {}
    card.training["stored"] = f"float16, rounded from float32 weights sha256 {card.sha256[:16]}..."
    card = save_model(model, Path(a.dst), card)
    print(f"{a.dst}: {card.name}, sha256 {card.sha256}")


if __name__ == "__main__":
    main()
