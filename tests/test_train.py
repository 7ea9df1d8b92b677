"""A short training run on the example images lowers the loss and writes a usable model."""

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from nfcompress.cli import main
from nfcompress.codec import Codec
from nfcompress.data import eval_sets, list_images
from nfcompress.evaluate import ideal_bpsp
from nfcompress.flows import IDF, IDFConfig
from nfcompress.weights import load_model

EXAMPLES = Path(__file__).parent.parent / "examples"
CONFIG = {"coupling_width": 8, "prior_width": 8, "prior_blocks": 1, "mixtures": 2}


def test_short_training_run_lowers_the_loss_and_writes_weights_and_card(tmp_path, monkeypatch):
    monkeypatch.setattr("nfcompress.train.LOG_SECONDS", 0.0)
    out = tmp_path / "m.safetensors"
    args = [
        "train",
        "--train",
        str(EXAMPLES),
        "--val",
        str(EXAMPLES),
        "-o",
        str(out),
        "--steps",
        "60",
        "--minutes",
        "5",
        "--batch-scale",
        "2",
        "--config",
        json.dumps(CONFIG),
        "--lr",
        "3e-3",
    ]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    # Not a terminal: progress comes as plain lines, one per step here.
    assert sum("minutes: step" in line for line in r.output.splitlines()) >= 50
    model, card = load_model(out)
    assert card.name == "m" and card.training["steps"] == 60  # named after the output
    assert {"thumb32", "thumb64", "native64"} <= card.metrics["bpsp"].keys()
    assert {"png", "webp", "nfcompress_ideal"} <= card.metrics["bpsp"]["thumb32"].keys()
    assert card.metrics["cpu_512"]["forward_s"] > 0
    # The weights ship as float16: half the bytes, and what the card measured.
    assert {t.dtype for t in load_file(str(out)).values() if t.is_floating_point()} == {torch.float16}
    # The card calibrates the portable form, and a codec of it writes portable files.
    convs = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert set(card.exact["ranges"]) == convs
    codec = Codec.load(str(out))
    img = np.asarray(Image.open(EXAMPLES / "pizza-128.png").convert("RGB"))[:40, :48]
    res = codec.encode(img)
    assert res.portable and np.array_equal(codec.decode(res.data), img)
    sets = eval_sets(list_images([EXAMPLES]), per_photo=2, seed=99)
    torch.manual_seed(0)
    fresh = IDF(IDFConfig.from_dict({**IDFConfig().to_dict(), **CONFIG})).eval()
    for kind in ["thumb32", "native64"]:
        assert ideal_bpsp(model, sets[kind]) < ideal_bpsp(fresh, sets[kind]) - 0.3
    # resuming continues from the checkpoint's step count
    r = CliRunner().invoke(main, [*args, "--steps", "70", "--resume"])  # the later --steps wins
    assert r.exit_code == 0, r.output
    assert load_model(out)[1].training["steps"] == 70
    assert np.isfinite(card.metrics["bpsp"]["thumb32"]["nfcompress_ideal"])


def test_init_copies_every_tensor_that_fits_a_deeper_model(tmp_path):
    from safetensors.torch import save_file

    from nfcompress.train import _init_from

    torch.manual_seed(1)
    small = IDF(IDFConfig.from_dict({**IDFConfig().to_dict(), **CONFIG, "levels": 2, "top_groups": [12, 12]}))
    for p in small.parameters():
        p.data.normal_()
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(tmp_path / "s.safetensors"))
    deep = IDF(IDFConfig.from_dict({**IDFConfig().to_dict(), **CONFIG, "levels": 3, "top_groups": [16, 16, 8, 8]}))
    copied = _init_from(deep, tmp_path / "s.safetensors")
    mine, theirs = deep.state_dict(), small.state_dict()
    shared = [k for k in theirs if k in mine and mine[k].shape == theirs[k].shape]
    assert copied == len(shared) and copied > 0
    assert all(torch.equal(mine[k], theirs[k]) for k in shared)
    assert "levels.0.couplings.0.net.inp.weight" in shared  # the first level carries over whole
    assert not any(k.startswith("levels.2.") for k in shared)  # the new level starts fresh


def test_init_without_contexts_starts_the_checkerboard_where_the_old_model_stood(tmp_path):
    from safetensors.torch import save_file

    from nfcompress.train import _init_from

    torch.manual_seed(2)
    base = {**IDFConfig().to_dict(), **CONFIG, "levels": 2, "top_groups": [12, 12]}
    old = IDF(IDFConfig.from_dict({**base, "checkerboard": False}))
    for p in old.parameters():
        p.data.normal_(0, 0.05)
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(tmp_path / "o.safetensors"))
    new = IDF(IDFConfig.from_dict({**base, "checkerboard": True}))
    _init_from(new, tmp_path / "o.safetensors")
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    with torch.no_grad():
        assert torch.allclose(new.bits(x), old.bits(x), rtol=1e-5)
    new.bits(x).sum().backward()
    gate = new.levels[0].contexts[0].gate
    assert gate.grad is not None and torch.any(gate.grad != 0)  # the neighbours can come into play


def test_the_adaptive_models_script_trains_under_torchrun_with_its_processes_in_step(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from nfcompress.coders.adaptive.train import sample

    photo = np.asarray(Image.open(EXAMPLES / "pizza-128.png").convert("RGB"))
    pool = [sample("clean2", np.ascontiguousarray(photo[y : y + 48, x : x + 48])) for y in (0, 40) for x in (0, 40)]
    np.save(tmp_path / "pool.npy", np.array(pool, dtype=object), allow_pickle=True)
    (tmp_path / "train").mkdir()
    script = Path(__file__).parent.parent / "scripts" / "train_adaptive.py"
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    args = [str(tmp_path / "train"), str(tmp_path / "out.pt"), "--pool", str(tmp_path / "pool.npy"), "--steps", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [torchrun, "--nproc_per_node", "2", str(script), *args, "--models", str(tmp_path / "models")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[:4000] + "\n...\n" + run.stderr[-1000:]  # the processes' own words first
    card = json.loads((tmp_path / "models" / "nfc-adaptive-new.json").read_text())
    assert card["training"]["processes"] == 2 and card["training"]["steps"] == 3
    assert card["training"]["device"] == "cpu"


def test_the_adaptive_models_script_tunes_the_shipped_network_for_a_wall_time_budget(tmp_path):
    import subprocess
    import sys

    from nfcompress.coders.adaptive import model
    from nfcompress.coders.adaptive.train import sample

    photo = np.asarray(Image.open(EXAMPLES / "pizza-128.png").convert("RGB"))
    pool = [sample("clean2", np.ascontiguousarray(photo[y : y + 32, :32])) for y in (0, 40)]
    np.save(tmp_path / "pool.npy", np.array(pool, dtype=object), allow_pickle=True)
    (tmp_path / "train").mkdir()
    script = Path(__file__).parent.parent / "scripts" / "train_adaptive.py"
    args = [str(tmp_path / "train"), str(tmp_path / "out.pt"), "--pool", str(tmp_path / "pool.npy"), "--start"]
    args += ["--minutes", "0.05", "--models", str(tmp_path / "models"), "--bf16"]
    run = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[:4000] + "\n...\n" + run.stderr[-1000:]  # the processes' own words first
    card = json.loads((tmp_path / "models" / "nfc-adaptive-new.json").read_text())  # exported: the checkpoint loads
    training = card["training"]
    assert training["start"] == f"the shipped {model.NEWEST_NETWORK[0]} network, tuned"
    assert training["steps"] > 0 and "over 0.05 minutes" in training["schedule"]
    assert "products in bfloat16" in training["schedule"]
    assert card["config"]["hidden"] == model.load()[0].second.shape[0]


def test_bfloat16_products_give_the_float_loss_to_their_precision_and_a_float_gradient():
    from nfcompress.coders.causal.train import CausalNet, batch_loss

    torch.manual_seed(0)
    net = CausalNet(32, 3)
    photo = np.asarray(Image.open(EXAMPLES / "pizza-128.png").convert("RGB"))
    x = np.stack([photo[:32, :32], photo[40:72, 40:72]])
    full, half = batch_loss(net, x), batch_loss(net, x, half=True)
    assert half.dtype == torch.float32 and half != full  # the products did run in bfloat16
    assert abs(float(half.detach()) / float(full.detach()) - 1) < 0.01
    half.backward()
    grad = net.planes[0].first.weight.grad
    assert grad is not None and grad.dtype == torch.float32 and torch.any(grad != 0)


def test_the_adaptive_features_of_chosen_sub_pixels_are_those_rows_of_every_sub_pixels():
    from nfcompress.coders.adaptive.train import features, sample

    photo = np.asarray(Image.open(EXAMPLES / "pizza-128.png").convert("RGB"))
    for image in (photo[:40, :56], np.ascontiguousarray(photo[:48, :48, :1])):
        s = sample("clean2", np.ascontiguousarray(image))
        at = np.random.default_rng(0).choice(image.shape[0] * image.shape[1], 300, replace=False)
        every, chosen = features(s), features(s, at)
        assert len(chosen) == image.shape[2]
        for whole, part in zip(every, chosen):
            for a, b in zip(whole, part):
                assert np.array_equal(a[at], b)
