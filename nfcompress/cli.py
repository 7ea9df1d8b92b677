"""The `nfcompress` command: thin Click commands over the library."""

__all__ = ["main"]

import json
import signal
import sys
import time
from pathlib import Path

import click


class _Interrupted(Exception):
    """SIGTERM, raised as an exception so cleanup code runs."""


def _on_sigterm(signum, frame):
    raise _Interrupted()


def _emit(record: dict, as_json: bool, text: str) -> None:
    click.echo(json.dumps(record) if as_json else text)


def _out_path(src: str, suffix: str, output: str | None, out_dir: str | None, many: bool) -> str:
    if output:
        if many:
            raise click.UsageError("-o names one output; use --out-dir for several inputs")
        return output
    if src == "-":
        return "-"
    p = Path(src)
    name = p.with_suffix(suffix).name
    return str(Path(out_dir) / name) if out_dir else str(p.with_suffix(suffix))


def _run_many(inputs, work, as_json: bool, label: str) -> None:
    """Run `work(src)` for every input; a bad one is named on stderr and the rest still run."""
    from nfcompress.errors import NfcError

    signal.signal(signal.SIGTERM, _on_sigterm)
    failed = 0
    show_bar = len(inputs) > 1 and not as_json and sys.stderr.isatty()
    with click.progressbar(inputs, label=label, file=sys.stderr) if show_bar else _nullbar(inputs) as items:
        for src in items:
            try:
                work(src)
            except NfcError as e:
                failed += 1
                click.echo(f"error: {e}", err=True)
            except (KeyboardInterrupt, _Interrupted):
                click.echo(f"error: interrupted while working on {src}; no partial output was left", err=True)
                sys.exit(130)
    if failed:
        click.echo(f"error: {failed} of {len(inputs)} inputs failed", err=True) if len(inputs) > 1 else None
        sys.exit(1)


class _nullbar:
    def __init__(self, items):
        self.items = items

    def __enter__(self):
        return self.items

    def __exit__(self, *a):
        return False


def _read_input(src: str) -> bytes | str:
    return sys.stdin.buffer.read() if src == "-" else src


def _write_output(dst: str, data: bytes, force: bool) -> None:
    from nfcompress.io import atomic_write

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(Path(dst), data, force=force)


model_option = click.option(
    "--model", "-m", default="", help="Model name or .safetensors path (default: the shipped model)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per input, one per line.")
force_option = click.option("--force", "-f", is_flag=True, help="Overwrite existing outputs.")


@click.group()
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
@click.option("--threads", type=int, default=0, help="CPU threads for the network (0: torch's default).")
def encode(inputs, output, out_dir, model, force, as_json, no_verify, max_pixels, threads) -> None:
    """Compress images to .nfc files (IMG -> IMG.nfc), each checked by decoding it again."""
    from nfcompress.api import get_codec
    from nfcompress.errors import NfcError
    from nfcompress.io import load_image

    _setup(threads, max_pixels)
    codec = _codec(get_codec, model)

    def work(src: str) -> None:
        dst = _out_path(src, ".nfc", output, out_dir, len(inputs) > 1)
        if dst != "-" and Path(dst).exists() and not force:
            raise NfcError(f"{dst}: already exists (use --force to overwrite)")
        t = time.perf_counter()
        pixels = load_image(_read_input(src))
        res = codec.encode(pixels, progress=_chunk_progress(src, as_json))
        if not no_verify and not (codec.decode(res.data) == pixels).all():
            raise NfcError(f"{src}: verification failed, the decoded image differs; nothing written")
        _write_output(dst, res.data, force)
        secs = time.perf_counter() - t
        rec = {
            "input": src,
            "output": dst,
            "bytes": len(res.data),
            "bpsp": round(res.bpsp, 4),
            "ideal_bpsp": round(res.ideal_bpsp, 4),
            "seconds": round(secs, 3),
            "width": pixels.shape[1],
            "height": pixels.shape[0],
        }
        if dst != "-" or as_json:
            _emit(
                rec,
                as_json,
                f"{src} -> {dst}: {len(res.data):,} bytes, {res.bpsp:.3f} bpsp "
                f"(ideal {res.ideal_bpsp:.3f}), {secs:.2f} s",
            )

    _run_many(list(inputs), work, as_json, "encoding")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file for a single input ('-' for stdout).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Folder for the outputs.")
@model_option
@force_option
@json_option
@click.option("--threads", type=int, default=0, help="CPU threads for the network (0: torch's default).")
def decode(inputs, output, out_dir, model, force, as_json, threads) -> None:
    """Decompress .nfc files to PNG (FILE.nfc -> FILE.png), bit-exact or an error."""
    from nfcompress.api import get_codec
    from nfcompress.container import unpack
    from nfcompress.errors import NfcError
    from nfcompress.io import image_to_png_bytes

    _setup(threads, None)

    def work(src: str) -> None:
        dst = _out_path(src, ".png", output, out_dir, len(inputs) > 1)
        if dst != "-" and Path(dst).exists() and not force:
            raise NfcError(f"{dst}: already exists (use --force to overwrite)")
        t = time.perf_counter()
        data = _read_bytes(src)
        header, _, _ = _prefixed(src, unpack, data)
        codec = _codec(get_codec, model or header.model_name)
        pixels = _prefixed(src, codec.decode, data, progress=_chunk_progress(src, as_json))
        _write_output(dst, image_to_png_bytes(pixels), force)
        secs = time.perf_counter() - t
        rec = {
            "input": src,
            "output": dst,
            "bytes": len(data),
            "bpsp": round(8 * len(data) / pixels.size, 4),
            "ideal_bpsp": None,
            "seconds": round(secs, 3),
            "width": header.width,
            "height": header.height,
        }
        if dst != "-" or as_json:
            _emit(
                rec,
                as_json,
                f"{src} -> {dst}: {header.width}x{header.height} {header.mode}, {rec['bpsp']:.3f} bpsp, {secs:.2f} s",
            )

    _run_many(list(inputs), work, as_json, "decoding")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@json_option
def info(inputs, as_json) -> None:
    """Show the header of .nfc files."""
    from nfcompress.container import unpack

    def work(src: str) -> None:
        data = _read_bytes(src)
        h, chunks, alpha = _prefixed(src, unpack, data)
        sub = h.width * h.height * h.channels
        rec = {
            "input": src,
            "bytes": len(data),
            "bpsp": round(8 * len(data) / sub, 4),
            "width": h.width,
            "height": h.height,
            "mode": h.mode,
            "bit_depth": h.bit_depth,
            "model": h.model_name,
            "model_hash": h.model_hash.hex(),
            "device": h.device,
            "tile": h.tile,
            "batch": h.batch,
            "chunks": len(chunks),
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
def bpd(inputs, model, as_json, max_pixels) -> None:
    """The model's ideal bits per sub-pixel of each image (high figures flag unusual images)."""
    from nfcompress.api import get_codec
    from nfcompress.io import load_image

    _setup(0, max_pixels)
    codec = _codec(get_codec, model)

    def work(src: str) -> None:
        pixels = load_image(_read_input(src))
        bits, sub = codec.ideal_bits(pixels)
        rec = {"input": src, "ideal_bpsp": round(bits / sub, 4), "width": pixels.shape[1], "height": pixels.shape[0]}
        _emit(rec, as_json, f"{src}: {bits / sub:.4f} bpsp")

    _run_many(list(inputs), work, as_json, "measuring")


def _setup(threads: int, max_pixels: int | None) -> None:
    import torch

    from nfcompress.io import set_max_pixels

    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)
    if max_pixels is not None:
        set_max_pixels(max_pixels or None)


def _codec(get_codec, model: str):
    from nfcompress.errors import NfcError

    try:
        return get_codec(model)
    except NfcError as e:
        raise click.ClickException(str(e)) from None


def _read_bytes(src: str) -> bytes:
    from nfcompress.errors import NfcError

    if src == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(src).read_bytes()
    except FileNotFoundError:
        raise NfcError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise NfcError(f"{src}: is a folder") from None
    except OSError as e:
        raise NfcError(f"{src}: cannot read ({e.strerror})") from None


def _prefixed(src: str, fn, *args, **kw):
    """Call fn, naming the input in any NfcError it raises."""
    from nfcompress.errors import NfcError

    try:
        return fn(*args, **kw)
    except NfcError as e:
        raise type(e)(f"{src}: {e}") from None


def _chunk_progress(src: str, as_json: bool):
    """A progress line on stderr for images of many chunks, when stderr is a terminal."""
    if as_json or not sys.stderr.isatty():
        return None

    def report(done: int, total: int) -> None:
        if total > 4:
            click.echo(f"\r{src}: {done}/{total} chunks", err=True, nl=done == total)

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
@click.option("--name", default="nfc-small", help="Model name stored in the card and in every file it codes.")
@click.option("--minutes", type=float, default=10.0, help="Wall-clock budget; the learning rate decays over it.")
@click.option("--steps", type=int, default=0, help="Stop after this many steps (0: only the time budget).")
@click.option("--holdout", multiple=True, help="Source package held out of training and validated on (repeatable).")
@click.option(
    "--config", "config_json", default="{}", help="Architecture overrides as JSON, e.g. '{\"couplings\": 4}'."
)
@click.option("--lr", type=float, default=1.5e-3)
@click.option("--pool", type=int, default=20000, help="Patches per kind drawn from the photos up front.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint beside the output.")
@click.option("--threads", type=int, default=0)
@click.option("--seed", type=int, default=0)
def train(
    train_dirs, val_dirs, output, name, minutes, steps, holdout, config_json, lr, pool, resume, threads, seed
) -> None:
    """Train a model on folders of photos (CUDA when present; torchrun for several GPUs)."""
    from nfcompress.flows import IDFConfig
    from nfcompress.train import TrainSettings
    from nfcompress.train import train as run

    try:
        config = IDFConfig.from_dict({**IDFConfig().to_dict(), **json.loads(config_json)})
    except (ValueError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint="--config") from None
    s = TrainSettings(
        train_dirs=list(train_dirs),
        val_dirs=list(val_dirs),
        output=output,
        name=name,
        config=config,
        minutes=minutes,
        max_steps=steps,
        holdout=list(holdout),
        lr=lr,
        pool=pool,
        resume=resume,
        threads=threads,
        seed=seed,
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
@click.option("--threads", type=int, default=0, help="CPU threads for the network (0: torch's default).")
def bench(folders, model, as_json, plot_path, threads) -> None:
    """nfcompress beside PNG, WebP lossless and JPEG XL on every image of each folder."""
    from nfcompress.api import get_codec
    from nfcompress.bench import bench_folder, format_table, plot

    _setup(threads, None)
    codec = _codec(get_codec, model)
    rows = []
    for folder in folders:
        show = sys.stderr.isatty() and not as_json
        rows += bench_folder(
            folder, codec, progress=(lambda p: click.echo(f"\r{p}", err=True, nl=False)) if show else None
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
