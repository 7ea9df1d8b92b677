"""The `nfcompress` command: thin Click commands over the library."""

__all__ = ["main"]

import json
import sys
from pathlib import Path

import click
import numpy as np

from nfcompress.coders.flow.orientation import DEFAULT_EFFORT, EFFORTS


def _emit(record: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(record) if as_json else text)


def _out_path(src: str, suffix: str, output: str | None, out_dir: str | None) -> str:
    if output:
        return output
    if src == "-":
        return "-"
    p = Path(src)
    name = p.with_suffix(suffix).name
    return str(Path(out_dir) / name) if out_dir else str(p.with_suffix(suffix))


def _run_many(inputs: list[str], work, as_json: bool, label: str) -> None:
    """Run `work(src)` for every input; a bad one is named on stderr and the rest still run."""
    from nfcompress.errors import NfcError

    failed = 0
    for src in inputs:
        try:
            work(src)
        except NfcError as e:
            failed += 1
            click.echo(f"error: {e}", err=True)
    _finish(failed, len(inputs))


def _finish(failed: int, total: int) -> None:
    if failed:
        if total > 1:
            click.echo(f"error: {failed} of {total} inputs failed", err=True)
        sys.exit(1)


def _code_files(
    fn, inputs, suffix, output, out_dir, jobs, as_json, describe, pixels, threads=0, max_pixels=None, **kw
) -> None:
    """Encode or decode every input (in `jobs` worker processes, each with `threads` threads and
    Pillow's limit `max_pixels`, as this process has them), one line or JSON object each."""
    from nfcompress.batch import run_jobs
    from nfcompress.errors import NfcError

    if output and len(inputs) > 1:
        raise click.UsageError("-o names one output; use --out-dir for several inputs")
    if "-" in inputs and jobs > 1:
        raise click.UsageError("stdin cannot be read by worker processes; drop -j")
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    pairs = [(src, _out_path(src, suffix, output, out_dir)) for src in inputs]
    if jobs <= 1 and len(pairs) == 1:
        kw["progress"] = _chunk_progress(pairs[0][0], as_json)
    failed = 0
    show_bar = len(pairs) > 1 and not as_json and sys.stderr.isatty()
    bar = click.progressbar(length=len(pairs), label="files", file=sys.stderr) if show_bar else None
    try:
        for _src, result in run_jobs(fn, pairs, jobs, pixels, threads=threads, max_pixels=max_pixels, **kw):
            if bar:
                bar.update(1)
            if isinstance(result, NfcError):
                failed += 1
                click.echo(f"{chr(10) if bar else ''}error: {result}", err=True)
            elif result["output"] != "-" or as_json:
                _emit(result, as_json, describe(result))
    finally:
        if bar:
            bar.render_finish()
    _finish(failed, len(pairs))


model_option = click.option(
    "--model", "-m", default="", help="Model name or .safetensors path (default: the shipped model)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per input, one per line.")
threads_option = click.option(
    "--threads", type=int, default=0, help="CPU threads for the models' products (0: torch's and numpy's defaults)."
)
jobs_option = click.option("-j", "--jobs", type=int, default=1, help="Worker processes for many files.")
device_option = click.option(
    "--device", default="cpu", help="cpu, or cuda where a GPU is present (the file records it)."
)
force_option = click.option("--force", "-f", is_flag=True, help="Overwrite existing outputs.")
effort_option = click.option(
    "--effort",
    type=click.IntRange(min(EFFORTS), max(EFFORTS)),
    default=DEFAULT_EFFORT,
    show_default=True,
    help="Encode effort: from 2 auto tries the flow too, each flow tile in the cheapest of up to 1, 2 or 8 "
    "orientations (the flow encodes up to 1x, 2x, 8x).",
)

coder_option = click.option(
    "--coder",
    # nfcompress.policy.CODERS, which a test compares (the CLI starts without importing the models)
    type=click.Choice(["auto", "flow", "linear", "adaptive", "causal", "screen"]),
    default="auto",
    show_default=True,
    help="What codes each image: the smallest file of the models auto tries, or one model.",
)

measure_coder_option = click.option(
    "--coder",
    type=click.Choice(["flow", "linear"]),
    default="flow",
    show_default=True,
    help="Whose ideal bits: the flow's, or the per-image linear model's (its side information counted in bpd).",
)


class _Interruptible(click.Group):
    """The command group: SIGTERM and Ctrl-C stop any command with one line and exit 130, from
    before torch is imported (outputs are written whole or not at all, so none is left half-done)."""

    def invoke(self, ctx: click.Context):
        from nfcompress.batch import Interrupted, catch_sigterm

        catch_sigterm()
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, Interrupted):
            pass
        except Exception as e:
            # A signal that lands in a class body's __set_name__ (torch's import is full of them)
            # comes out wrapped in a RuntimeError: it is still the interruption.
            if not _caused_by_interruption(e, (KeyboardInterrupt, Interrupted)):
                raise
        click.echo("error: interrupted; no partial output was left", err=True)
        sys.exit(130)


def _caused_by_interruption(e: BaseException, kinds: tuple[type, ...]) -> bool:
    """Whether an exception, or one it was raised from, is an interruption."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, kinds):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


@click.group(cls=_Interruptible)
@click.version_option(package_name="nfcompress")
def main() -> None:
    """Lossless image compression with an integer discrete flow."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file for a single input ('-' for stdout).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Folder for the outputs.")
@model_option
@force_option
@json_option
@click.option("--no-verify", is_flag=True, help="Skip decoding the output to check it is exact.")
@click.option("--max-pixels", type=int, default=None, help="Pillow's decompression-bomb limit (0 lifts it).")
@threads_option
@jobs_option
@device_option
@effort_option
@click.option(
    "--portable/--no-portable",
    default=None,
    help="Every file is portable (decodes alike on any machine); --no-portable, which wrote files bound to "
    "one machine's floats, is refused.",
)
@coder_option
def encode(
    inputs,
    output,
    out_dir,
    model,
    force,
    as_json,
    no_verify,
    max_pixels,
    threads,
    jobs,
    device,
    effort,
    portable,
    coder,
) -> None:
    """Compress images to .nfc files (IMG -> IMG.nfc), each checked by decoding it again."""
    from nfcompress.batch import encode_files, image_pixels

    _setup(threads, max_pixels, device)
    _codec(model, device)
    _code_files(
        encode_files,
        list(inputs),
        ".nfc",
        output,
        out_dir,
        jobs,
        as_json,
        lambda r: (
            f"{r['input']} -> {r['output']}: {r['bytes']:,} bytes, {r['bpsp']:.3f} bpsp "
            f"(ideal {r['ideal_bpsp']:.3f}, {r['coder']}), {r['seconds']:.2f} s"
        ),
        image_pixels,
        threads=threads,
        max_pixels=max_pixels,
        model=model,
        device=device,
        force=force,
        verify=not no_verify,
        effort=effort,
        portable=portable,
        coder=coder,
    )


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file for a single input ('-' for stdout).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Folder for the outputs.")
@model_option
@force_option
@json_option
@threads_option
@jobs_option
@device_option
def decode(inputs, output, out_dir, model, force, as_json, threads, jobs, device) -> None:
    """Decompress .nfc files to PNG (FILE.nfc -> FILE.png), bit-exact or an error."""
    from nfcompress.batch import decode_files, nfc_pixels

    _setup(threads, None, device)
    _code_files(
        decode_files,
        list(inputs),
        ".png",
        output,
        out_dir,
        jobs,
        as_json,
        lambda r: (
            f"{r['input']} -> {r['output']}: {r['width']}x{r['height']} {r['mode']}, "
            f"{r['bpsp']:.3f} bpsp, {r['seconds']:.2f} s"
        ),
        nfc_pixels,
        threads=threads,
        model=model,
        device=device,
        force=force,
    )


@main.command()
@json_option
def models(as_json) -> None:
    """List the models at hand: which one encodes by default, which shipped, and their cards' figures."""
    from nfcompress.container import SHIPPED_MODELS
    from nfcompress.model_files import DEFAULT_MODEL, PAYLOAD_MODELS, models_dir

    fixed = {name: kind for kind, names in PAYLOAD_MODELS.items() for name in names.values()}

    folder = models_dir()
    if not folder.is_dir():
        raise click.ClickException(f"no models folder at {folder}")
    for card_path in sorted(folder.glob("*.json")):
        weights = card_path.with_suffix(".safetensors")
        try:
            card = json.loads(card_path.read_text())
            figures = {k: v.get("nfcompress_ideal") for k, v in card["metrics"].get("bpsp", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a model card
        if not weights.is_file():
            continue
        rec = {
            "name": card_path.stem,
            "default": card_path.stem == DEFAULT_MODEL,
            "shipped": card_path.stem in (*SHIPPED_MODELS, *fixed),
            "kind": fixed.get(card_path.stem, "flow"),
            "parameters": card.get("metrics", {}).get("parameters"),
            "megabytes": round(weights.stat().st_size / 1e6, 1),
            "portable": bool(card.get("exact")),
            "ideal_bpsp": figures,
            "path": str(weights),
        }
        marks = ", ".join(m for m, on in (("default", rec["default"]), ("shipped", rec["shipped"])) if on)
        marks += f", the {rec['kind']} model" if rec["kind"] != "flow" else ""
        text = " ".join(f"{k} {v}" for k, v in figures.items())
        _emit(rec, as_json, f"{rec['name']}{f' ({marks})' if marks else ''}: {rec['megabytes']} MB; {text}")


def _model_name(header) -> str | None:
    """The model a file needs, by name; None for a shipped model this installation lacks."""
    from nfcompress.errors import NfcError
    from nfcompress.weights import model_of

    try:
        return model_of(header)
    except NfcError:
        return None


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@json_option
def info(inputs, as_json) -> None:
    """Show the header of .nfc files."""
    from nfcompress.batch import read_input
    from nfcompress.container import unpack
    from nfcompress.model_files import payload_model

    def work(src: str) -> None:
        data = _prefixed(src, read_input, src)
        h, chunks, alpha = _prefixed(src, unpack, data)
        sub = h.width * h.height * h.channels
        rec = {
            "input": src,
            "format_version": h.version,
            "bytes": len(data),
            "bpsp": round(8 * len(data) / sub, 4),
            "width": h.width,
            "height": h.height,
            "mode": h.mode,
            "bit_depth": h.bit_depth,
            "coder": h.kind,
            "model": payload_model(h.kind, h.version) if h.model_free else _model_name(h),
            "model_hash": h.model_hash.hex(),
            "device": h.device,
            "portable": h.device == "any",
            "tile": None if h.one_tile or h.model_free else h.tile,
            "batch": None if h.one_tile or h.model_free else h.batch,
            "chunks": len(chunks),
            "orientations": h.oriented,
            "alpha_bytes": len(alpha),
            "pixel_crc32": f"{h.pixel_crc:08x}",
        }
        _emit(rec, as_json, "\n".join(f"{k}: {v}" for k, v in rec.items()))

    _run_many(list(inputs), work, as_json, "reading")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@model_option
@json_option
@click.option("--max-pixels", type=int, default=None, help="Pillow's decompression-bomb limit (0 lifts it).")
@effort_option
@measure_coder_option
def bpd(inputs, model, as_json, max_pixels, effort, coder) -> None:
    """The model's ideal bits per sub-pixel of each image (high figures flag unusual images)."""
    from nfcompress.batch import read_input
    from nfcompress.io import load_image

    _setup(0, max_pixels)
    codec = _codec(model) if coder == "flow" else None

    def work(src: str) -> None:
        pixels = load_image(read_input(src) if src == "-" else src)
        if codec is None:
            from nfcompress.codec import encode_linear

            res = encode_linear(pixels)
            bits, sub = res.ideal_bits, res.subpixels
        else:
            bits, sub = codec.ideal_bits(pixels, effort=effort)
        rec = {"input": src, "ideal_bpsp": round(bits / sub, 4), "width": pixels.shape[1], "height": pixels.shape[0]}
        _emit(rec, as_json, f"{src}: {bits / sub:.4f} bpsp")

    _run_many(list(inputs), work, as_json, "measuring")


def _setup(threads: int, max_pixels: int | None, device: str = "cpu") -> None:
    from nfcompress.batch import configure

    if device.startswith("cuda") and not _cuda_available():
        raise click.ClickException("--device cuda: no CUDA GPU is available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise click.BadParameter(f"unknown device {device!r}", param_hint="--device")
    configure(threads, max_pixels)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _codec(model: str, device: str = "cpu"):
    from nfcompress.api import get_codec
    from nfcompress.errors import NfcError

    try:
        return get_codec(model, device)
    except NfcError as e:
        raise click.ClickException(str(e)) from None


def _prefixed(src: str, fn, *args, **kw):
    """Call fn, naming the input in any NfcError it raises."""
    from nfcompress.batch import named_error
    from nfcompress.errors import NfcError

    try:
        return fn(*args, **kw)
    except NfcError as e:
        raise named_error(src, e) from None


def _chunk_progress(src: str, as_json: bool):
    """A progress line on stderr for images of many chunks, when stderr is a terminal."""
    if as_json or not sys.stderr.isatty():
        return None

    def report(done: int, total: int) -> None:
        if total > 4:
            click.echo(f"\r{src}: {done}/{total}", err=True, nl=done == total)

    return report


@main.command()
@click.option(
    "--train",
    "train_dirs",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Folder of training images (repeatable).",
)
@click.option(
    "--val", "val_dirs", multiple=True, type=click.Path(exists=True), help="Folder of validation images (repeatable)."
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="Weights to write (.safetensors; the card goes beside it).",
)
@click.option(
    "--name", default="", help="Model name stored in the card and in every file it codes (default: the output's stem)."
)
@click.option("--minutes", type=float, default=10.0, help="Wall-clock budget; the learning rate decays over it.")
@click.option("--steps", type=int, default=0, help="Stop after this many steps (0: only the time budget).")
@click.option("--holdout", multiple=True, help="Source package held out of training and validated on (repeatable).")
@click.option(
    "--config", "config_json", default="{}", help="Architecture overrides as JSON, e.g. '{\"couplings\": 4}'."
)
@click.option("--lr", type=float, default=1.5e-3)
@click.option("--schedule-minutes", type=float, default=0.0, help="Span of the learning-rate decay over resumed runs.")
@click.option("--batch-scale", type=int, default=1, help="Multiply every batch (about 64k pixels) by this.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint beside the output.")
@click.option("--init", default="", help="Start from these weights (.safetensors) wherever names and shapes match.")
@click.option("--threads", type=int, default=0)
@click.option("--seed", type=int, default=0)
@click.option("--eval-minutes", type=float, default=5.0, help="Validate (and checkpoint) this often.")
@click.option(
    "--mix",
    default="",
    help="What each step draws, e.g. 'thumb32:0.3,native64:0.7' (default: nfcompress.train.DEFAULT_MIX).",
)
def train(
    train_dirs,
    val_dirs,
    output,
    name,
    minutes,
    steps,
    holdout,
    config_json,
    lr,
    schedule_minutes,
    batch_scale,
    resume,
    init,
    threads,
    seed,
    eval_minutes,
    mix,
) -> None:
    """Train a model on folders of photos (CUDA when present; torchrun for several GPUs)."""
    from nfcompress.flows import IDFConfig
    from nfcompress.train import DEFAULT_MIX, TrainSettings, parse_mix
    from nfcompress.train import train as run

    try:
        config = IDFConfig.from_dict({**IDFConfig().to_dict(), **json.loads(config_json)})
    except (ValueError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint="--config") from None
    try:
        kinds = parse_mix(mix or DEFAULT_MIX)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--mix") from None
    s = TrainSettings(
        train_dirs=list(train_dirs),
        val_dirs=list(val_dirs),
        output=output,
        name=name or Path(output).stem,
        config=config,
        minutes=minutes,
        max_steps=steps,
        holdout=list(holdout),
        lr=lr,
        schedule_minutes=schedule_minutes,
        batch_scale=batch_scale,
        resume=resume,
        init=init,
        threads=threads,
        seed=seed,
        eval_minutes=eval_minutes,
        kinds=kinds,
    )
    try:
        card = run(s, log=lambda m: click.echo(m, err=True))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps({"output": output, "sha256": card.sha256, "metrics": card.metrics}))


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@model_option
@json_option
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a chart of size and speed (PNG).")
@threads_option
@jobs_option
@effort_option
@device_option
def bench(folders, model, as_json, plot_path, threads, jobs, effort, device) -> None:
    """nfcompress beside PNG, WebP lossless and JPEG XL on every image of each folder."""
    from nfcompress.bench import bench_folder, format_table, plot

    _setup(threads, None, device)
    if device != "cpu" and jobs > 1:
        raise click.BadParameter("one process codes on a GPU: leave out -j", param_hint="--jobs")
    codec = _codec(model, device)
    rows = []
    for folder in folders:
        show = sys.stderr.isatty() and not as_json
        rows += bench_folder(
            folder,
            codec,
            progress=(lambda p: click.echo(f"\r{p}", err=True, nl=False)) if show else None,
            jobs=jobs,
            model=model,
            effort=effort,
            threads=threads,
        )
        if show:
            click.echo("", err=True)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.to_dict()))
    else:
        click.echo(format_table(rows))
    if plot_path:
        plot(rows, plot_path)
    if any(r.failures for r in rows):
        raise click.ClickException("some round trips were not exact: " + ", ".join(f for r in rows for f in r.failures))


@main.command()
@click.argument("image")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option("--overlay", is_flag=True, help="Blend the map over the image instead of beside it.")
@model_option
@force_option
@json_option
@measure_coder_option
def heatmap(image, output, overlay, model, force, as_json, coder) -> None:
    """A picture of where the bits go: the model's bits per pixel as a colour map."""
    from nfcompress.errors import NfcError
    from nfcompress.io import atomic_write, image_to_png_bytes, load_image
    from nfcompress.visual import bit_map, heatmap_image, linear_bit_map

    _setup(0, None)
    codec = _codec(model) if coder == "flow" else None
    try:
        pixels = load_image(image)
        bits = linear_bit_map(pixels) if codec is None else bit_map(codec, pixels)
        atomic_write(Path(output), image_to_png_bytes(np.asarray(heatmap_image(pixels, bits, overlay))), force=force)
    except NfcError as e:
        raise click.ClickException(str(e)) from None
    sub = pixels.size
    rec = {
        "input": image,
        "output": output,
        "ideal_bits": round(float(bits.sum()), 1),
        "ideal_bpsp": round(float(bits.sum()) / sub, 4),
        "max_bits_per_pixel": round(float(bits.max()), 2),
    }
    _emit(rec, as_json, f"{image}: {rec['ideal_bits']:.0f} bits in all, {rec['ideal_bpsp']:.3f} bpsp; map in {output}")


@main.command()
@click.option("-n", "count", type=int, default=16, show_default=True, help="How many images.")
@click.option(
    "--size",
    type=int,
    default=32,
    show_default=True,
    help="Side of each image (a multiple of 2^levels: 32 for nfc-small).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Scale of the priors' spread.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG grid to write.")
@model_option
@force_option
def sample(count, size, seed, temperature, output, model, force) -> None:
    """Draw new images from the flow (sample the priors, invert the flow) as a grid."""
    from nfcompress.errors import NfcError
    from nfcompress.io import atomic_write, image_to_png_bytes
    from nfcompress.visual import grid
    from nfcompress.visual import sample as draw

    _setup(0, None)
    codec = _codec(model)
    net = codec.flow.model
    if size % net.config.multiple or size <= 0 or not 0 < count <= 1024:
        raise click.BadParameter(f"size must be a positive multiple of {net.config.multiple}, n in 1..1024")
    images = draw(net, count, size, seed, temperature)
    try:
        atomic_write(Path(output), image_to_png_bytes(np.asarray(grid(images))), force=force)
    except NfcError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{count} samples of {size}x{size} (seed {seed}) in {output}")
