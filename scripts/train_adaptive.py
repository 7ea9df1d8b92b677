"""Train the adaptive model (nfcompress.coders.adaptive) on crops of photos with their linear fits.

python scripts/train_adaptive.py ../shared/data/photos/train OUT.pt [--pool POOL.npy] [--steps N]
    [--lr LR] [--device cpu|cuda] [--models models] [--name nfc-adaptive-new] [--export-only]
    [--start] [--minutes M] [--bf16]
torchrun --nproc_per_node G scripts/train_adaptive.py ... --device cuda   (G GPUs, or CPU processes)

The pool (crops of every kind below, each with the linear model fitted to it, as the encoder
fits it) is built once with both cores and kept in --pool. Training starts from the shipped
causal network (with --start, from the newest shipped adaptive network, to tune it), writes
OUT.pt (with its optimiser, so a run resumes where it stopped) every few minutes (with
--minutes, the rate's cosine follows a wall-time budget and the run stops at its end), then
exports integer weights and a card measured on the held-out packages. Under torchrun each
process draws its own samples and DDP averages the gradients (each step then sees PER_STEP
samples a process); the first process writes OUT.pt, builds a missing pool and exports.
The weights export as models/NAME: a new network for new files needs a format version of its own
(`nfcompress.coders.adaptive.model.MODELS`), so no shipped network is overwritten.
--bf16 runs the network's products in bfloat16 (the loss in float32): 2.3 times the steps a
minute on a CPU core with AVX-512 BF16, and a step's progress as in float32.
"""

import argparse
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nfcompress.coders.adaptive import model
from nfcompress.coders.adaptive.train import (
    AdaptiveNet,
    Sample,
    batch_loss,
    export,
    features,
    sample,
    shipped_net,
    start_from_causal,
)
from nfcompress.coders.causal import model as causal
from nfcompress.data import list_images, load_photo, native_crop, split_heldout, thumbnail
from nfcompress.train import cpu_name, ema_step, start_ddp, stop_ddp, timed_rate

HOLDOUT = ("tuxtype-data", "scribus-template", "hugin-data")
PER_STEP, ROWS = 8, 4096  # samples per step, and sub-pixel rows drawn from each


def box(img: np.ndarray, f: int) -> np.ndarray:
    """The photo box-downscaled by f (its JPEG grid and noise averaged away)."""
    h, w = img.shape[0] // f * f, img.shape[1] // f * f
    return np.asarray(Image.fromarray(img[:h, :w]).resize((w // f, h // f), Image.BOX))


def crop(img: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of at most side x side."""
    h, w = img.shape[:2]
    s = min(side, h, w)
    y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
    return img[y : y + s, x : x + s]


def photo_samples(arg: tuple[Path, int]) -> list[Sample]:
    """The pool's samples of one photo: clean crops (box-downscaled by 2, 64 to 256 px and 384 to
    512 px, whose fits have the larger images' weight sets and block classes; by 4, 48 to 192 px),
    thumbnails, a native crop, a grey clean crop."""
    path, seed = arg
    rng = np.random.default_rng(seed)
    img = load_photo(path)
    d2, d4 = box(img, 2), box(img, 4)
    crops = [("clean2", crop(d2, int(rng.choice([64, 96, 128, 192, 256])), rng)) for _ in range(3)]
    crops += [("clean2_big", crop(d2, int(rng.choice([384, 448, 512])), rng)) for _ in range(2)]
    crops += [("clean4", crop(d4, int(rng.choice([48, 64, 96, 128, 192])), rng)) for _ in range(2)]
    crops += [("thumb32", thumbnail(img, 32, rng)), ("thumb64", thumbnail(img, 64, rng))]
    crops += [("native", native_crop(img, int(rng.choice([64, 128])), rng))]
    grey = crop(d2, int(rng.choice([64, 128, 192])), rng)
    crops += [("grey", np.asarray(Image.fromarray(np.ascontiguousarray(grey)).convert("L"))[..., None])]
    out = []
    for kind, c in crops:
        c = np.ascontiguousarray(c[:, ::-1] if rng.random() < 0.5 else c)
        out.append(sample(kind, c))
    return out


def build_pool(paths: list[Path], rounds: int, seed: int) -> list[Sample]:
    """Samples of every photo, `rounds` times, on both cores."""
    args = [(p, seed + 1000 * r + i) for r in range(rounds) for i, p in enumerate(paths)]
    out, t0 = [], time.time()
    with Pool(2) as pool:
        for k, res in enumerate(pool.imap_unordered(photo_samples, args)):
            out += res
            if k % 50 == 0:
                print(f"pool {k}/{len(args)} photos, {time.time() - t0:.0f} s", flush=True)
    return out


def held_out_sets(paths: list[Path]) -> dict[str, list[np.ndarray]]:
    """The card's images, from the held-out packages: central 256x256 and 512x512 clean crops
    (box-downscaled by 2) and a central 128x128 native crop of each photo, and a 64x64 thumbnail."""
    sets: dict[str, list[np.ndarray]] = {"clean2_256": [], "clean2_512": [], "native128": [], "thumb64": []}
    rng = np.random.default_rng(0)
    for p in paths:
        img = load_photo(p)
        d2 = box(img, 2)
        for kind, src, side in (("clean2_256", d2, 256), ("clean2_512", d2, 512), ("native128", img, 128)):
            h, w = src.shape[:2]
            if min(h, w) >= side:
                y, x = (h - side) // 2, (w - side) // 2
                sets[kind].append(np.ascontiguousarray(src[y : y + side, x : x + side]))
        sets["thumb64"].append(thumbnail(img, 64, rng))
    return sets


def main() -> None:
    """Build the pool, train, checkpoint and export."""
    ap = argparse.ArgumentParser()
    ap.add_argument("train_dir")
    ap.add_argument("out")
    ap.add_argument("--pool", default="cache/adaptive-pool.npy")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, help="at most this many steps (default 6000, or no limit with --minutes)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="models")
    ap.add_argument("--name", default="nfc-adaptive-new")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--start", action="store_true")
    ap.add_argument("--minutes", type=float, default=0.0)
    ap.add_argument("--bf16", action="store_true", help="the network's products in bfloat16 (the loss in float32)")
    a = ap.parse_args()
    if a.steps is None:
        a.steps = 1 << 40 if a.minutes else 6000
    torch.set_flush_denormal(True)
    rank, world = start_ddp()
    if a.device == "cuda":
        a.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(a.device)
    kept, held = split_heldout(list_images([a.train_dir]), HOLDOUT)
    if not a.export_only:
        pool_path = Path(a.pool)
        if rank == 0 and not pool_path.exists():
            pool = build_pool(kept, a.rounds, a.seed)
            pool_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(pool_path, np.array(pool, dtype=object), allow_pickle=True)
        if world > 1:
            torch.distributed.barrier()  # the pool is there for every process
        pool = list(np.load(pool_path, allow_pickle=True))
        train(a, pool, len(kept), rank, world)
    if rank == 0:
        card = export(Path(a.out), Path(a.models), held_out_sets(held), a.name)
        print(card["metrics"])
    stop_ddp(world)


def rate(step: int, steps: int, top: float) -> float:
    """The learning rate at a step: a linear warm-up over 5% of the steps, then a cosine to 1% of top
    (a resumed run with more steps stretches the rest of the schedule)."""
    warm = max(1, steps // 20)
    if step <= warm:
        return top * step / warm
    t = min(1.0, (step - warm) / max(1, steps - warm))
    return float(top * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * t))))


def rows(s: Sample, rng: np.random.Generator, n: int = ROWS) -> list:
    """The per-plane `features` of at most n random sub-pixels of a sample (built for those alone)."""
    m = s.image.shape[0] * s.image.shape[1]
    return features(s, None if m <= n else rng.choice(m, n, replace=False))


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, net: torch.nn.Module, ema: torch.nn.Module) -> None:
    """A step of the optimiser down `loss`, then `ema` 0.2% of the way to `net`'s weights."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    ema_step(ema, net, 0.998)


class _Loss(torch.nn.Module):
    """The network's mean bits on a step's samples as a module's forward, so DDP can hook it."""

    def __init__(self, net: AdaptiveNet, device: str, half: bool) -> None:
        super().__init__()
        self.net, self.device, self.half = net, device, half

    def forward(self, parts: list) -> torch.Tensor:
        return batch_loss(self.net, parts, self.device, self.half)


def train(a: argparse.Namespace, pool: list[Sample], photos: int, rank: int = 0, world: int = 1) -> None:
    """Train from the shipped causal network, or tune the shipped adaptive one (--start), or resume
    a.out, writing a.out every 5 minutes and at the end; under torchrun (rank of world), DDP
    averages the processes' gradients."""
    torch.manual_seed(a.seed)
    if a.start:
        net = shipped_net().to(a.device)
        start = f"the shipped {model.NEWEST_NETWORK[0]} network, tuned"
    else:
        net = AdaptiveNet().to(a.device)
        start_from_causal(net, causal.load())
        start = f"the shipped causal network ({causal.NEWEST_NETWORK[0]}), zero weights for the extras"
    ema = AdaptiveNet(net.hidden).to(a.device)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), a.lr)
    history, first, minutes = [], 1, 0.0
    if Path(a.out).exists():
        ck = torch.load(a.out, weights_only=False)
        net.load_state_dict(ck["net"])
        ema.load_state_dict(ck["state"])
        opt.load_state_dict(ck["opt"])
        history, first = ck["training"]["history"], ck["training"]["steps"] + 1
        minutes, start = ck["training"]["wall_minutes"], ck["training"]["start"]
    rng = np.random.default_rng(a.seed + first + 1000 * rank)
    loss_of: torch.nn.Module = _Loss(net, a.device, a.bf16)
    if world > 1:
        loss_of = torch.nn.parallel.DistributedDataParallel(loss_of)
    t0, saved, run, trained = time.time(), time.time(), 0.0, first - 1

    def save() -> None:
        schedule = (
            f"2% warm-up, cosine decay over {a.minutes} minutes" if a.minutes else "5% warm-up, cosine decay to 1%"
        )
        training = {
            "train_dirs": [a.train_dir],
            "photos": photos,
            "holdout_packages": list(HOLDOUT),
            "pool": {kind: sum(s.kind == kind for s in pool) for kind in sorted({s.kind for s in pool})},
            "start": start,
            "steps": trained,
            "lr": a.lr,
            "schedule": f"{schedule}, Adam, EMA 0.998, {PER_STEP} samples x {ROWS} rows"
            + (", products in bfloat16" if a.bf16 else ""),
            "wall_minutes": round(minutes + (time.time() - t0) / 60, 1),
            "device": a.device.split(":")[0],
            "hardware": torch.cuda.get_device_name() if a.device.startswith("cuda") else cpu_name(),
            "processes": world,
            "history": history,
        }
        state = {"state": ema.state_dict(), "net": net.state_dict(), "opt": opt.state_dict()}
        torch.save(state | {"settings": net.settings(), "training": training}, Path(a.out))

    for step in range(first, a.steps + 1):
        done = minutes + (time.time() - t0) / 60
        if a.minutes and done >= a.minutes:
            break
        for g in opt.param_groups:
            g["lr"] = timed_rate(done / a.minutes, a.lr) if a.minutes else rate(step, a.steps, a.lr)
        loss = loss_of([rows(pool[k], rng) for k in rng.integers(0, len(pool), PER_STEP)])
        optimise(opt, loss, net, ema)
        trained, run = step, 0.98 * run + 0.02 * float(loss.detach())
        if step % 200 == 0 and rank == 0:
            history.append(
                {"step": step, "bpsp": round(run / (1 - 0.98 ** (step - first + 1)), 4), "minutes": round(done, 1)}
            )
            print(history[-1], flush=True)
        if rank == 0 and time.time() - saved > 300:
            saved = time.time()
            save()
    if rank == 0 and trained >= first:
        save()
    if world > 1:  # DDP keeps every process's weights the same: check that it did
        flat = torch.cat([p.detach().flatten() for p in net.parameters()])
        high, low = flat.clone(), flat.clone()
        torch.distributed.all_reduce(high, torch.distributed.ReduceOp.MAX)
        torch.distributed.all_reduce(low, torch.distributed.ReduceOp.MIN)
        if not torch.equal(high, low):
            raise RuntimeError("the processes' weights differ: DDP did not keep them in step")


if __name__ == "__main__":
    main()
