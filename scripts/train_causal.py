"""Train the causal model (nfcompress.coders.causal) on thumbnails and native crops of photos.

python scripts/train_causal.py ../shared/data/photos/train OUT.pt [--steps N] [--hidden H] [--mixtures K]
    [--val ../shared/data/photos/val] [--models models] [--export-only] [--start] [--minutes M] [--name NAME] [--bf16]

Writes a float checkpoint (with its settings and history) every few minutes and at the end, then
its integer weights and card as --name (`nfcompress.coders.causal.train.export`, measured on the
val photos and the held-out packages) into --models. --export-only exports OUT.pt as it stands.
--start tunes the newest shipped integer network instead of a fresh one; --minutes stops after M
minutes of wall time, the learning rate's cosine following the time spent instead of the steps.
--bf16 runs the network's products in bfloat16 (the loss in float32), about twice as fast a step.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from nfcompress.coders.causal import model as causal
from nfcompress.coders.causal.train import CausalNet, batch_loss, export, float_layers, settings_of
from nfcompress.data import PhotoSampler, list_images, load_photo, split_heldout
from nfcompress.train import cpu_name, ema_step, timed_rate

HOLDOUT = ("tuxtype-data", "scribus-template", "hugin-data")
# Each step draws one kind: (kind, side, images, share).
KINDS = (("thumb", 32, 32, 0.5), ("thumb", 64, 8, 0.4), ("native", 64, 8, 0.1))


def main() -> None:
    """Train, checkpoint and export."""
    ap = argparse.ArgumentParser()
    ap.add_argument("train_dir")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, help="at most this many steps (default 10000, or no limit with --minutes)")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--mixtures", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", default="../shared/data/photos/val")
    ap.add_argument("--models", default="models")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--name", default=causal.NEWEST_NETWORK[0])
    ap.add_argument("--start", action="store_true")
    ap.add_argument("--minutes", type=float, default=0.0)
    ap.add_argument("--bf16", action="store_true", help="the network's products in bfloat16 (the loss in float32)")
    a = ap.parse_args()
    if a.steps is None:
        a.steps = 1 << 40 if a.minutes else 10000
    torch.manual_seed(a.seed)
    kept, held = split_heldout(list_images([a.train_dir]), HOLDOUT)
    if not a.export_only:
        train(a, kept)
    card = export(Path(a.out), Path(a.models), a.val, held, a.name)
    print(card["metrics"])


def train(a: argparse.Namespace, kept: list[Path]) -> None:
    """Train, writing the checkpoint a.out every 5 minutes and at the end."""
    sampler = PhotoSampler([load_photo(p) for p in kept], "cpu", a.seed)
    net = CausalNet(a.hidden, a.mixtures)
    if a.start:
        for layer, pw in zip(net.planes, causal.load()):
            layer.load_state_dict(float_layers(pw))
    ema = CausalNet(a.hidden, a.mixtures)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), a.lr)
    sched = None if a.minutes else torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.steps, pct_start=0.03)
    start = f"the shipped {causal.NEWEST_NETWORK[0]} network, tuned" if a.start else "fresh"
    rng = np.random.default_rng(a.seed)
    shares = np.array([k[3] for k in KINDS])
    history, t0, saved, run, trained = [], time.time(), time.time(), 0.0, 0

    def checkpoint() -> None:
        torch.save(
            {
                "state": ema.state_dict(),
                "settings": settings_of(ema),
                "training": {
                    "train_dirs": [a.train_dir],
                    "photos": len(kept),
                    "holdout_packages": list(HOLDOUT),
                    "kinds": [f"{k}{s} x{n} p={p}" for k, s, n, p in KINDS],
                    "steps": trained,
                    "lr": a.lr,
                    "start": start,
                    "schedule": (
                        f"2% warm-up, cosine decay over {a.minutes} minutes"
                        if a.minutes
                        else "one cycle (3% warm-up, cosine decay)"
                    )
                    + ", Adam, EMA 0.999"
                    + (", products in bfloat16" if a.bf16 else ""),
                    "wall_minutes": round((time.time() - t0) / 60, 1),
                    "device": "cpu",
                    "hardware": f"{cpu_name()}, {torch.get_num_threads()} threads",
                    "history": history,
                },
            },
            Path(a.out),
        )

    for step in range(1, a.steps + 1):
        if a.minutes:
            done = (time.time() - t0) / 60 / a.minutes
            if done >= 1:
                break
            for g in opt.param_groups:
                g["lr"] = timed_rate(done, a.lr)
        kind, side, n, _ = KINDS[rng.choice(len(KINDS), p=shares / shares.sum())]
        x = sampler.batch(kind, side, n).permute(0, 2, 3, 1).to(torch.uint8).numpy()
        loss = batch_loss(net, x, a.bf16)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        ema_step(ema, net, 0.999)
        trained = step
        run = 0.98 * run + 0.02 * float(loss.detach())
        if step % 200 == 0:
            history.append(
                {"step": step, "bpsp": round(run / (1 - 0.98**step), 4), "minutes": round((time.time() - t0) / 60, 1)}
            )
            print(history[-1], flush=True)
        if time.time() - saved > 300:
            saved = time.time()
            checkpoint()
    checkpoint()


if __name__ == "__main__":
    main()
