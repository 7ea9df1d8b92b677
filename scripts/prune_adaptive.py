"""Prune the shipped adaptive network to fewer hidden units and fine-tune it: fewer products a
sub-pixel, for a new payload version if its bits hold.

python scripts/prune_adaptive.py HIDDEN OUT.pt [--pool cache/adaptive-pool.npy] [--steps 6000]
    [--lr 5e-4] [--held 160] [--start START.pt] [--export NAME [--export-only]
    [--photos ../shared/data/photos/train]]

Keeps the units whose activations times outgoing weights weigh most (the same units in both
layers: the second layer adds its input back), then trains on the pool but `--held` samples,
on which it prints the bits of the shipped network and of the pruned one as it goes (float,
ideal); with --start, it tunes the pruned network of an earlier run further instead. OUT.pt
holds the EMA weights (`state`), the settings, the figures and each run's steps. With --export,
its integer weights go to models/NAME.safetensors with their card, measured as real payloads on
the held-out packages' photos (as scripts/train_adaptive.py exports).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nfcompress.coders.adaptive import model
from nfcompress.coders.adaptive.train import AdaptiveNet, batch_loss, shipped_net
from nfcompress.coders.causal.train import INPUT_SCALE
from nfcompress.train import cpu_name

sys.path.insert(0, str(Path(__file__).parent))
from train_adaptive import HOLDOUT, PER_STEP, held_out_sets, optimise, rate, rows  # noqa: E402

from nfcompress.coders.adaptive.train import export  # noqa: E402
from nfcompress.data import list_images, split_heldout  # noqa: E402


@torch.no_grad()
def prune(big: AdaptiveNet, hidden: int, samples: list) -> AdaptiveNet:
    """`big` cut to its `hidden` weightiest units per plane, on the features of `samples`."""
    small = AdaptiveNet(hidden)
    for k, (b, s) in enumerate(zip(big.planes, small.planes)):
        f = torch.from_numpy(np.concatenate([p[k][0] for p in samples if len(p) > k])).float()
        h = torch.relu(b.first(f * INPUT_SCALE))
        g = torch.relu(b.second(h)) + h
        weight = g.abs().mean(0) * b.out.weight.norm(dim=0) + h.abs().mean(0) * b.second.weight.norm(dim=0)
        keep = torch.argsort(weight, descending=True)[:hidden].sort().values
        s.first.weight.copy_(b.first.weight[keep])
        s.first.bias.copy_(b.first.bias[keep])
        s.second.weight.copy_(b.second.weight[keep][:, keep])
        s.second.bias.copy_(b.second.bias[keep])
        s.out.weight.copy_(b.out.weight[:, keep])
        s.out.bias.copy_(b.out.bias)
    return small


def main() -> None:
    """Prune, fine-tune, report."""
    ap = argparse.ArgumentParser()
    ap.add_argument("hidden", type=int)
    ap.add_argument("out")
    ap.add_argument("--pool", default="cache/adaptive-pool.npy")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--held", type=int, default=160)
    ap.add_argument("--start", default="")
    ap.add_argument("--export", default="")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--photos", default="../shared/data/photos/train")
    a = ap.parse_args()
    torch.set_flush_denormal(True)
    if not a.export_only:
        prune_and_tune(a)
    if a.export:
        ck = torch.load(a.out, weights_only=False)
        ck["training"] = {
            "start": f"the shipped {model.MODELS[13][0]} network pruned to its {a.hidden} weightiest hidden units"
            + "".join(f", tuned {n} steps" for n in ck.get("runs", [])),
            "pool": a.pool,
            "held_in_pool": a.held,
            "holdout_packages": list(HOLDOUT),
            "steps": sum(ck.get("runs", [])) or ck.get("step", a.steps),
            "lr": ck.get("lrs", a.lr),
            "schedule": f"cosine decay, Adam, EMA, {PER_STEP} samples a step",
            "device": "cpu",
            "hardware": cpu_name(),
        } | ({"pool_figures": ck["figures"]} if "figures" in ck else {})
        torch.save(ck, a.out)
        held = split_heldout(list_images([a.photos]), HOLDOUT)[1]
        print(export(Path(a.out), Path("models"), held_out_sets(held), a.export)["metrics"])


def prune_and_tune(a: argparse.Namespace) -> None:
    """Prune the shipped network to a.hidden units and fine-tune it, checkpointing to a.out."""
    pool = list(np.load(a.pool, allow_pickle=True))
    order = np.random.default_rng(1).permutation(len(pool))
    held, train = order[: a.held], order[a.held :]
    rng = np.random.default_rng(7)
    held_parts = [rows(pool[k], rng, 2048) for k in held]
    kinds = [pool[k].kind for k in held]

    @torch.no_grad()
    def bits(net: AdaptiveNet) -> dict:
        out = {kind: float(batch_loss(net, [p for p, k in zip(held_parts, kinds) if k == kind])) for kind in set(kinds)}
        return {k: round(v, 4) for k, v in sorted(out.items())} | {"all": round(float(batch_loss(net, held_parts)), 4)}

    big = shipped_net(13)
    figures = {"shipped": bits(big)}
    if a.start:
        start = torch.load(a.start, weights_only=False)
        net, runs, lrs = AdaptiveNet(a.hidden), start.get("runs", [start.get("step", 0)]), start.get("lrs", [])
        net.load_state_dict(start["state"])
    else:
        net, runs, lrs = prune(big, a.hidden, [rows(pool[k], rng, 1024) for k in train[:64]]), [], []
    figures["start"] = bits(net)
    print(figures, flush=True)
    ema = AdaptiveNet(a.hidden)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), a.lr)
    t0, draw = time.time(), np.random.default_rng(3)
    for step in range(1, a.steps + 1):
        for g in opt.param_groups:
            g["lr"] = rate(step, a.steps, a.lr)
        optimise(opt, batch_loss(net, [rows(pool[k], draw) for k in draw.choice(train, PER_STEP)]), net, ema)
        if step % 500 == 0 or step == a.steps:
            figures[step] = bits(ema)
            print(step, f"{(time.time() - t0) / 60:.1f} min", figures[step], flush=True)
            state = {"state": ema.state_dict(), "settings": ema.settings(), "figures": figures}
            torch.save(state | {"runs": [*runs, step], "lrs": [*lrs, a.lr]}, a.out)


if __name__ == "__main__":
    main()
