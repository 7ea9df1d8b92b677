"""Training: patches of photos -> an IDF, with EMA weights, resumable checkpoints and a card."""

__all__ = ["TrainSettings", "parse_mix", "train", "start_ddp", "stop_ddp", "ema_step", "cpu_name", "timed_rate"]

import faulthandler
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nfcompress.data import PhotoSampler, eval_sets, list_images, load_photo, split_heldout
from nfcompress.evaluate import classical_bpsp, flow_timing, ideal_bpsp
from nfcompress.flows import IDF, IDFConfig
from nfcompress.flows.exact import LEVELS, calibrate
from nfcompress.weights import ModelCard, round_to_half, save_model

# Each step draws one kind of patch; a batch holds about this many pixels (times
# TrainSettings.batch_scale).
BATCH_PIXELS = 65536
# How often training writes a progress line where stderr is not a terminal.
LOG_SECONDS = 60.0
DEFAULT_MIX = "thumb32:0.3,thumb64:0.3,native64:0.25,native32:0.15"


def parse_mix(text: str) -> list[tuple[str, int, int, float]]:
    """KINDS from text like 'thumb32:0.3,native64:0.7' (batches of about 64k pixels each).

    >>> parse_mix("thumb32:0.5, native128:0.5")
    [('thumb', 32, 64, 0.5), ('native', 128, 4, 0.5)]
    """
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(thumb|native)(\d+):([0-9.]+)\s*", part)
        if not m:
            raise ValueError(f"bad mix entry {part.strip()!r}: expected thumbN:WEIGHT or nativeN:WEIGHT")
        size, weight = int(m[2]), float(m[3])
        if size < 8 or size & (size - 1) or size > 256:
            raise ValueError(f"bad mix entry {part.strip()!r}: the size must be a power of two from 8 to 256")
        if weight <= 0:
            raise ValueError(f"bad mix entry {part.strip()!r}: the weight must be positive")
        out.append((m[1], size, max(1, BATCH_PIXELS // size**2), weight))
    return out


KINDS = parse_mix(DEFAULT_MIX)


@dataclass
class TrainSettings:
    """Everything a training run needs; saved in the card."""

    train_dirs: list[str]
    val_dirs: list[str]
    output: str
    name: str = "custom"
    config: IDFConfig = field(default_factory=IDFConfig)
    minutes: float = 10.0
    # The learning rate's cosine spans this many minutes over all resumed runs (0: `minutes`).
    schedule_minutes: float = 0.0
    batch_scale: int = 1
    max_steps: int = 0
    lr: float = 1.5e-3
    warmup: int = 300
    ema: float = 0.999
    holdout: list[str] = field(default_factory=list)
    seed: int = 0
    eval_minutes: float = 5.0
    eval_per_photo: int = 4
    checkpoint: str = ""
    # Start from another model's weights wherever names and shapes match (new parts start fresh).
    init: str = ""
    resume: bool = False
    threads: int = 0
    # What each step draws: (kind, size, batch, weight); see parse_mix.
    kinds: list = field(default_factory=lambda: list(KINDS))


class _Loss(torch.nn.Module):
    """Bits per sub-pixel of a batch as a module's forward, so DDP can hook it."""

    def __init__(self, model: IDF) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.bits(x).sum() / x.numel()


def start_ddp() -> tuple[int, int]:
    """(rank, world size), starting torch.distributed when launched by torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1
    import torch.distributed as dist

    faulthandler.enable()  # a process that aborts in C++ still prints where its Python stood
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def stop_ddp(world: int) -> None:
    """End torch.distributed together: every process waits for the others (rank 0 exports the card
    meanwhile), so none tears down its end of the group while a peer still holds it."""
    if world == 1:
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def cpu_name() -> str:
    """The CPU's model name and core count, for a card."""
    try:
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else 'CPU'}, {os.cpu_count()} cores"


def timed_rate(done: float, top: float) -> float:
    """The learning rate a share `done` of a wall-time budget in: a 2% warm-up to `top`, then a
    cosine to 0 (a Python float: a checkpoint of the optimiser then loads weights-only)."""
    return float(top * min(1.0, done / 0.02) * 0.5 * (1 + math.cos(math.pi * min(1.0, done))))


@torch.no_grad()
def ema_step(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    """Move the averaged weights `ema` 1 - decay of the way to `net`'s, after a training step."""
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - decay)


def _save_state(path: Path, model: IDF, ema: IDF, opt: torch.optim.Optimizer, meta: dict) -> None:
    """A resumable checkpoint: safetensors for every tensor, JSON for the rest."""
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(path / "ema.safetensors"))
    opt_tensors, opt_meta = {}, {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                opt_tensors[f"{i}.{k}"] = v.contiguous()
            else:
                opt_meta[f"{i}.{k}"] = v
    save_file(opt_tensors, str(path / "optim.safetensors"))
    (path / "state.json").write_text(json.dumps({**meta, "optim": opt_meta}))


def _load_state(path: Path, model: IDF, ema: IDF, opt: torch.optim.Optimizer) -> dict:
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    ema.load_state_dict(load_file(str(path / "ema.safetensors")))
    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "optim.safetensors"))
    sd = opt.state_dict()
    state: dict = {}
    for key, v in list(tensors.items()) + list(meta.pop("optim").items()):
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return meta


def _init_from(model: IDF, path: Path) -> int:
    """Copy every tensor of the weights at `path` whose name and shape `model` shares; how many.

    Checkerboard contexts missing from those weights start as copies of their priors.
    """
    own = model.state_dict()
    found = {k: v for k, v in load_file(str(path)).items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(found, strict=False)
    if model.config.checkerboard and not any(".contexts." in k for k in found):
        model.seed_contexts()
    return len(found)


def _val_sets(val_dirs: list[str], val_paths: list[Path], per_photo: int) -> dict[str, np.ndarray]:
    """Validation sets from the val photos, or from a saved .npz of them (for machines without the photos)."""
    npz = [d for d in val_dirs if d.endswith(".npz")]
    if npz:
        with np.load(npz[0]) as f:
            return {k: f[k] for k in f.files}
    return eval_sets(val_paths, per_photo=per_photo) if val_paths else {}


def _lr(step: int, frac: float, s: TrainSettings) -> float:
    warm = min(1.0, (step + 1) / s.warmup)
    return s.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def train(s: TrainSettings, progress: bool = True, log=print) -> ModelCard:
    """Train (or resume) a model as `s` says; writes weights and card to `s.output`."""
    from tqdm import tqdm

    torch.set_flush_denormal(True)
    torch.backends.cudnn.benchmark = True
    if s.threads:
        torch.set_num_threads(s.threads)
    rank, world = start_ddp()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(s.seed + rank)
    rng = np.random.default_rng(s.seed + 1000 * rank)

    all_train = list_images(s.train_dirs)
    train_paths, held_paths = split_heldout(all_train, s.holdout)
    val_paths = list_images([d for d in s.val_dirs if not d.endswith(".npz")])
    if not train_paths:
        raise ValueError("no training images found")
    log(f"training on {len(train_paths)} photos; holding out {len(held_paths)} ({', '.join(s.holdout) or 'none'})")
    t0 = time.time()
    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as ex:
        photos = list(ex.map(load_photo, train_paths))
    sampler = PhotoSampler(photos, device, s.seed + rank)
    del photos
    weights = np.array([w for *_, w in s.kinds])
    weights = weights / weights.sum()
    log(f"photos ready in {time.time() - t0:.0f}s")
    val_sets = _val_sets(s.val_dirs, val_paths, s.eval_per_photo)
    held_eval = held_paths + split_heldout(val_paths, s.holdout)[1]
    held_sets = eval_sets(held_eval, per_photo=s.eval_per_photo) if held_eval else {}

    model = IDF(s.config).to(device)
    ema = IDF(s.config).to(device)
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    ckpt = Path(s.checkpoint or Path(s.output).with_suffix(".ckpt"))
    step, elapsed_before, history = 0, 0.0, []
    resuming = s.resume and (ckpt / "state.json").exists()
    if s.init and not resuming:
        log(f"started from {s.init}: {_init_from(model, Path(s.init))} tensors")
        ema.load_state_dict(model.state_dict())
    if resuming:
        meta = _load_state(ckpt, model, ema, opt)
        step, elapsed_before = meta["step"], meta["elapsed"]
        history = meta.get("history", [])
        log(f"resumed from {ckpt} at step {step}")
    net: torch.nn.Module = _Loss(model)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net)

    budget = s.minutes * 60
    schedule = s.schedule_minutes * 60 or elapsed_before + budget
    start = time.time()
    last_eval = start
    # A bar on a terminal; in a log (not a terminal), a plain line every LOG_SECONDS.
    tty = sys.stderr.isatty()
    last_line = start
    bar = tqdm(
        total=int(budget),
        unit="s",
        disable=not progress or rank != 0 or not tty,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s {postfix}",
    )
    running, smoothed = None, None
    while True:
        elapsed = time.time() - start
        if elapsed >= budget or (s.max_steps and step >= s.max_steps):
            break
        frac = (elapsed_before + elapsed) / schedule
        for g in opt.param_groups:
            g["lr"] = _lr(step, frac, s)
        kind, size, batch, _ = s.kinds[rng.choice(len(s.kinds), p=weights)]
        x = sampler.batch(kind, size, batch * s.batch_scale)
        loss = net(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        ema_step(ema, model, min(s.ema, (1 + step) / (10 + step)))
        step += 1
        smoothed = loss.detach() if smoothed is None else 0.98 * smoothed + 0.02 * loss.detach()
        if step % 25 == 0 or running is None:
            running = float(smoothed)  # reading it waits for the GPU, so not every step
        if rank == 0 and tty:
            bar.n = int(min(elapsed, budget))
            bar.set_postfix_str(f"step {step} loss {running:.3f} bpsp")
        elif rank == 0 and progress and time.time() - last_line >= LOG_SECONDS:
            last_line = time.time()
            log(f"{elapsed / 60:.1f} of {budget / 60:.0f} minutes: step {step}, loss {running:.3f} bpsp")
        if rank == 0 and val_sets and time.time() - last_eval > s.eval_minutes * 60:
            last_eval = time.time()
            ema.eval()
            v = {k: round(ideal_bpsp(ema, a), 4) for k, a in val_sets.items()}
            history.append(
                {
                    "step": step,
                    "minutes": round((elapsed_before + time.time() - start) / 60, 1),
                    "train": round(running, 4),
                    **v,
                }
            )
            log(f"step {step}: train {running:.3f} val {v}")
            meta = {"step": step, "elapsed": elapsed_before + time.time() - start, "history": history}
            _save_state(ckpt, model, ema, opt, meta)
    bar.close()
    if rank != 0:
        return ModelCard(s.name, s.config.to_dict())
    wall = elapsed_before + time.time() - start
    _save_state(ckpt, model, ema, opt, {"step": step, "elapsed": wall, "history": history})
    ema.eval().cpu()
    # Stored as float16 (half the bytes); the card measures the rounded weights it ships.
    round_to_half(ema)
    card = ModelCard(
        name=s.name,
        config=s.config.to_dict(),
        training={
            "train_dirs": s.train_dirs,
            "val_dirs": s.val_dirs,
            "photos": len(train_paths),
            "holdout_packages": s.holdout,
            "kinds": [f"{k}{z} x{b * s.batch_scale} p={w}" for k, z, b, w in s.kinds],
            "steps": step,
            "wall_minutes": round(wall / 60, 1),
            "device": str(device),
            "world_size": world,
            "lr": s.lr,
            "init": s.init,
            "ema": s.ema,
            "history": history,
        },
    )
    card.exact = exact_calibration(ema, [sampler.batch(k, 64, 64).cpu() for k in ("native", "thumb") for _ in range(4)])
    card.metrics = measure(ema, val_sets, held_sets)
    return save_model(ema, Path(s.output), card)


def exact_calibration(model: IDF, batches: list[torch.Tensor]) -> dict:
    """The card's calibration of the model's portable (exact integer) form, from patches."""
    ranges = calibrate(model, batches)
    return {"levels": LEVELS, "ranges": ranges, "calibration": f"{sum(len(x) for x in batches)} training patches"}


def measure(model: IDF, val_sets: dict, held_sets: dict) -> dict:
    """The card's figures: ideal bpsp beside classical codecs on val and held-out sets, speed."""
    metrics: dict = {"bpsp": {}, "heldout_bpsp": {}}
    for key, sets in (("bpsp", val_sets), ("heldout_bpsp", held_sets)):
        for k, a in sets.items():
            metrics[key][k] = {
                "nfcompress_ideal": round(ideal_bpsp(model, a), 4),
                **{c: round(v, 4) for c, v in classical_bpsp(a).items()},
            }
    metrics["cpu_512"] = flow_timing(model)
    metrics["cpu_threads"] = torch.get_num_threads()
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    return metrics
