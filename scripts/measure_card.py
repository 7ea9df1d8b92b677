"""Re-measure a model card's figures on this machine: val and held-out sets beside PNG, WebP and
JPEG XL, and CPU speed. For models trained where the photos or imagecodecs were not at hand."""

import argparse
from pathlib import Path

import torch

from nfcompress.data import eval_sets, list_images, split_heldout
from nfcompress.train import measure
from nfcompress.weights import load_model, save_model


def main() -> None:
    """Rewrite the card beside MODEL with figures measured from the photo folders."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="path to the .safetensors weights")
    ap.add_argument("--train", required=True, help="training photos (the held-out packages are read from here)")
    ap.add_argument("--val", required=True, help="validation photos")
    ap.add_argument("--per-photo", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, card = load_model(Path(a.model))
    val = list_images([a.val])
    held = split_heldout(list_images([a.train]) + val, card.training.get("holdout_packages", []))[1]
    card.training["val_dirs"] = [a.val]
    card.metrics = measure(
        model,
        eval_sets(val, per_photo=a.per_photo),
        eval_sets(held, per_photo=a.per_photo) if held else {},
    )
    save_model(model, Path(a.model), card)
    print(card.to_json())


if __name__ == "__main__":
    main()
