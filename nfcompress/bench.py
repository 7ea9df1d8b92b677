"""Every codec on the same images: sizes totalled per folder, speeds, round trips checked."""

__all__ = ["CodecFigures", "bench_folder", "format_table", "plot"]

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nfcompress.classical import available, encode_classical
from nfcompress.codec import Codec
from nfcompress.data import list_images
from nfcompress.io import load_image
from nfcompress.policy import DEFAULT_EFFORT


@dataclass
class CodecFigures:
    """One codec's totals over one folder."""

    codec: str
    folder: str
    effort: int | None = None  # nfcompress's encode effort
    model: str | None = None  # nfcompress's model
    images: int = 0
    subpixels: int = 0
    bytes: int = 0
    ideal_bits: float = 0.0
    encode_s: float = 0.0
    decode_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    coded: dict[str, int] = field(default_factory=dict)  # nfcompress's files by the model that coded them

    @property
    def bpsp(self) -> float:
        """Total file bits over total sub-pixels."""
        return 8 * self.bytes / max(self.subpixels, 1)

    def to_dict(self) -> dict:
        """JSON-ready, derived figures included."""
        d = asdict(self)
        d.update(
            bpsp=round(self.bpsp, 4),
            ideal_bpsp=round(self.ideal_bits / self.subpixels, 4) if self.ideal_bits else None,
            encode_msubs=round(self.subpixels / self.encode_s / 1e6, 4) if self.encode_s else None,
            decode_msubs=round(self.subpixels / self.decode_s / 1e6, 4) if self.decode_s else None,
        )
        return d


def _bench_group(
    paths: list[Path], codec: Codec | None, names: list[str], model: str = "", effort: int = DEFAULT_EFFORT
) -> list[dict[str, tuple]]:
    """(bytes, ideal bits, encode s, decode s, exact, sub-pixels, nfcompress's coder or "") of each image
    for every codec.

    nfcompress codes the group together, as `nfcompress encode` does with small files; each
    image is charged its share, by sub-pixels, of the group's time.
    """
    if codec is None:
        from nfcompress.api import get_codec

        codec = get_codec(model)
    images = [load_image(p) for p in paths]
    out: list[dict[str, tuple]] = [{} for _ in images]
    total = sum(img.size for img in images)
    for n in names:
        if n == "nfcompress":
            t = time.perf_counter()
            coded = codec.encode_many(images, effort=effort)
            t1 = time.perf_counter()
            back = codec.decode_many([r.data for r in coded])
            t2 = time.perf_counter()
            for o, img, res, dec in zip(out, images, coded, back):
                ok = isinstance(dec, np.ndarray) and np.array_equal(dec, img)
                share = img.size / total
                enc, dec_s = (t1 - t) * share, (t2 - t1) * share
                o[n] = (len(res.data), res.ideal_bits, enc, dec_s, ok, int(img.size), res.coder)
            continue
        for o, img in zip(out, images):
            t = time.perf_counter()
            data, dec = encode_classical(n, img)
            t1 = time.perf_counter()
            ok = bool(np.array_equal(dec(data), img))
            o[n] = (len(data), 0.0, t1 - t, time.perf_counter() - t1, ok, int(img.size), "")
    return out


def _warm_up(codec: Codec, path: Path) -> None:
    """Code a corner of the first image once, so no timed image pays for first-call set-up."""
    corner = np.ascontiguousarray(load_image(path)[:64, :64])
    codec.decode(codec.encode(corner).data)


def bench_folder(
    folder: str | Path,
    codec: Codec,
    classical: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    jobs: int = 1,
    model: str = "",
    effort: int = DEFAULT_EFFORT,
    threads: int = 0,
) -> list[CodecFigures]:
    """Code every image under `folder` with nfcompress and each classical codec.

    Small images are coded in groups, as `nfcompress encode` codes small files. With jobs > 1
    the groups are shared among worker processes (each loads `model`, with `threads` threads);
    the speeds are then per process, summed over images, not the pool's throughput.
    """
    from nfcompress.batch import grouped, image_pixels, worker_pool

    names = ["nfcompress"] + (available() if classical is None else classical)
    figs = {n: CodecFigures(n, str(folder)) for n in names}
    figs["nfcompress"].effort, figs["nfcompress"].model = effort, codec.name
    paths = list_images([folder])
    groups = list(grouped(paths, lambda p: image_pixels(str(p))))

    def add(path: Path, per: dict[str, tuple]) -> None:
        for n, (size, ideal, enc_s, dec_s, ok, sub, coder) in per.items():
            f = figs[n]
            if coder:
                f.coded[coder] = f.coded.get(coder, 0) + 1
            f.images += 1
            f.subpixels += sub
            f.bytes += size
            f.ideal_bits += ideal
            f.encode_s += enc_s
            f.decode_s += dec_s
            if not ok:
                f.failures.append(str(path))
        if progress:
            progress(str(path))

    if jobs <= 1:
        if paths:
            _warm_up(codec, paths[0])
        for group in groups:
            for path, per in zip(group, _bench_group(group, codec, names, effort=effort)):
                add(path, per)
    else:
        with worker_pool(jobs, threads) as pool:
            futures = [pool.submit(_bench_group, g, None, names, model, effort) for g in groups]
            for group, fut in zip(groups, futures):
                for path, per in zip(group, fut.result()):
                    add(path, per)
    return list(figs.values())


def format_table(rows: list[CodecFigures]) -> str:
    """A plain-text table: one line per folder and codec."""
    head = f"{'folder':<28} {'codec':<11} {'images':>6} {'bpsp':>7} {'ideal':>7} {'enc Msub/s':>10} {'dec Msub/s':>10}"
    head += "  coded by"
    lines = [head, "-" * len(head)]
    for r in rows:
        d = r.to_dict()
        ideal = f"{d['ideal_bpsp']:.3f}" if d["ideal_bpsp"] else ""
        fail = f"  FAILED {len(r.failures)}" if r.failures else ""
        coded = "  " + ", ".join(f"{k} {v}" for k, v in sorted(r.coded.items())) if r.coded else ""
        lines.append(
            f"{Path(r.folder).name[-28:]:<28} {r.codec:<11} {r.images:>6} {r.bpsp:>7.3f} {ideal:>7} "
            f"{d['encode_msubs'] or 0:>10.3f} {d['decode_msubs'] or 0:>10.3f}{fail}{coded}"
        )
    return "\n".join(lines)


def plot(rows: list[CodecFigures], path: str | Path) -> None:
    """A PNG chart: bits per sub-pixel and encode/decode speed (log scale) per codec and folder."""
    from PIL import Image, ImageDraw

    folders = list(dict.fromkeys(r.folder for r in rows))
    codecs = list(dict.fromkeys(r.codec for r in rows))
    colours = [(214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189)]
    bar, gap, panel_h = 22, 30, 260
    width = 120 + len(folders) * (len(codecs) * bar + gap)
    img = Image.new("RGB", (max(width, 420), 2 * panel_h + 90), "white")
    d = ImageDraw.Draw(img)
    max_bpsp = max(r.bpsp for r in rows) * 1.1
    speeds = [v for r in rows for v in (r.to_dict()["encode_msubs"], r.to_dict()["decode_msubs"]) if v]
    lo, hi = np.log10(min(speeds)) - 0.2, np.log10(max(speeds)) + 0.2
    for panel, title in enumerate(["bits per sub-pixel (lower is better)", "encode | decode Msub/s, log scale"]):
        top = 30 + panel * (panel_h + 30)
        d.text((10, top - 20), title, fill="black")
        d.line((60, top, 60, top + panel_h), fill="black")
        d.line((60, top + panel_h, img.width - 10, top + panel_h), fill="black")
        for fi, folder in enumerate(folders):
            x0 = 70 + fi * (len(codecs) * bar + gap)
            d.text((x0, top + panel_h + 4), Path(folder).name[:18], fill="black")
            for ci, c in enumerate(codecs):
                r = next((r for r in rows if r.folder == folder and r.codec == c), None)
                if r is None:
                    continue
                x = x0 + ci * bar
                if panel == 0:
                    h = panel_h * r.bpsp / max_bpsp
                    d.rectangle((x, top + panel_h - h, x + bar - 4, top + panel_h), fill=colours[ci % 5])
                    d.text((x, top + panel_h - h - 12), f"{r.bpsp:.2f}", fill="black")
                else:
                    for k, key in enumerate(("encode_msubs", "decode_msubs")):
                        v = r.to_dict()[key]
                        if v:
                            h = panel_h * (np.log10(v) - lo) / (hi - lo)
                            xs = x + k * (bar - 4) // 2
                            d.rectangle(
                                (xs, top + panel_h - h, xs + (bar - 4) // 2 - 1, top + panel_h), fill=colours[ci % 5]
                            )
    for ci, c in enumerate(codecs):
        d.rectangle((img.width - 110, 10 + ci * 14, img.width - 100, 20 + ci * 14), fill=colours[ci % 5])
        d.text((img.width - 95, 8 + ci * 14), c, fill="black")
    img.save(path)
