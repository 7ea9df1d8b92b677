"""Calibrate a model's portable (exact integer) form and write it into the model's card.

Draws thumbnails and native crops from the training photos (held-out packages left out), runs
the float model on them and keeps every convolution's input range; the weights file, and so
the model's hash, do not change.

    python scripts/calibrate_exact.py models/nfc-small.safetensors --train ../shared/data/photos/train
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from nfcompress.data import eval_sets, list_images, split_heldout
from nfcompress.train import exact_calibration
from nfcompress.weights import load_model, save_card


def main() -> None:
    """Measure the ranges and rewrite the card beside MODEL."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="path to the .safetensors weights")
    ap.add_argument("--train", required=True, help="training photos")
    ap.add_argument("--per-photo", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(2)
    model, card = load_model(Path(a.model))
    photos = split_heldout(list_images([a.train]), card.training.get("holdout_packages", []))[0]
    sets = eval_sets(photos, per_photo=a.per_photo)
    x = torch.from_numpy(np.concatenate([sets["native64"], sets["thumb64"]])).float()
    card.exact = exact_calibration(model, list(x.split(64)))
    card.exact["calibration"] = f"{len(x)} patches (native64, thumb64) from {len(photos)} training photos"
    save_card(Path(a.model), card)
    print(f"{len(card.exact['ranges'])} convolutions calibrated on {len(x)} patches")


if __name__ == "__main__":
    main()
