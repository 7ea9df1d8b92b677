"""Draw a folder of computer-made graphics for the bench: a desktop with windows, a bar chart, a
diagram, a flat wallpaper, a line plot, a grey user interface. The same images every run.

    python scripts/make_graphics.py OUT_DIR
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TEXT, PANEL, DARK, BLUE = (35, 38, 41), (239, 240, 241), (49, 54, 59), (61, 174, 233)


def _window(d: ImageDraw.ImageDraw, x: int, y: int, w: int, h: int, title: str, lines: int) -> None:
    d.rectangle((x, y, x + w, y + h), fill=PANEL, outline=(120, 125, 130))
    d.rectangle((x, y, x + w, y + 22), fill=DARK)
    d.text((x + 8, y + 5), title, fill=(252, 252, 252))
    for k in range(lines):
        d.text((x + 12, y + 32 + 16 * k), f"{title} line {k}: options, values and a longer label", fill=TEXT)
    d.rectangle((x + w - 70, y + h - 30, x + w - 10, y + h - 8), fill=BLUE)
    d.text((x + w - 52, y + h - 25), "Close", fill=(255, 255, 255))


def desktop() -> Image.Image:
    """A desktop: a computed gradient wallpaper, a panel, icons and two windows."""
    h, w = 720, 1024
    yy, xx = np.mgrid[0:h, 0:w]
    wall = np.stack([20 + 60 * yy // h, 40 + 80 * xx // w, 120 + 100 * (yy + xx) // (h + w)], -1).astype(np.uint8)
    im = Image.fromarray(wall)
    d = ImageDraw.Draw(im)
    d.rectangle((0, h - 36, w, h), fill=DARK)
    for k in range(6):
        d.rectangle((8 + 40 * k, h - 30, 32 + 40 * k, h - 6), fill=(80 + 25 * k, 120, 200 - 20 * k))
        d.rectangle((20, 20 + 80 * k, 68, 68 + 80 * k), fill=(200, 170 - 20 * k, 60 + 30 * k))
        d.text((16, 72 + 80 * k), f"Folder {k}", fill=(255, 255, 255))
    _window(d, 140, 60, 520, 360, "Settings", 18)
    _window(d, 420, 300, 540, 330, "Files", 16)
    return im


def chart() -> Image.Image:
    """A bar chart with axes, grid lines, labels and a legend."""
    im = Image.new("RGB", (800, 500), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for k in range(6):
        y = 440 - 70 * k
        d.line((60, y, 780, y), fill=(225, 225, 225))
        d.text((20, y - 6), str(20 * k), fill=TEXT)
    d.line((60, 440, 780, 440), fill=TEXT, width=2)
    d.line((60, 40, 60, 440), fill=TEXT, width=2)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    for g in range(8):
        for s, c in enumerate(colours):
            top = 440 - (40 + (37 * g + 61 * s) % 300)
            d.rectangle((80 + 88 * g + 22 * s, top, 98 + 88 * g + 22 * s, 439), fill=c)
        d.text((90 + 88 * g, 450), f"Q{g % 4 + 1}/{2020 + g // 4}", fill=TEXT)
    for s, c in enumerate(colours):
        d.rectangle((620, 50 + 20 * s, 634, 64 + 20 * s), fill=c)
        d.text((640, 52 + 20 * s), f"series {s + 1}", fill=TEXT)
    return im


def diagram() -> Image.Image:
    """Boxes, arrows and labels."""
    im = Image.new("RGB", (900, 560), (250, 250, 250))
    d = ImageDraw.Draw(im)
    boxes = [
        (60, 60, "image"),
        (340, 60, "policy"),
        (620, 60, "screen"),
        (340, 250, "linear"),
        (620, 250, "flow"),
        (340, 440, "container"),
        (60, 440, "file"),
    ]
    for x, y, label in boxes:
        d.rounded_rectangle((x, y, x + 200, y + 70), 12, fill=(220, 235, 250), outline=(40, 90, 160), width=2)
        d.text((x + 70, y + 28), label, fill=TEXT)
    for (x0, y0), (x1, y1) in [
        ((260, 95), (340, 95)),
        ((540, 95), (620, 95)),
        ((440, 130), (440, 250)),
        ((540, 285), (620, 285)),
        ((440, 320), (440, 440)),
        ((340, 475), (260, 475)),
    ]:
        d.line((x0, y0, x1, y1), fill=(40, 40, 40), width=3)
        d.ellipse((x1 - 5, y1 - 5, x1 + 5, y1 + 5), fill=(40, 40, 40))
    return im


def wallpaper() -> Image.Image:
    """A flat wallpaper: large fields of one colour and a few shapes."""
    im = Image.new("RGB", (1024, 640), (18, 32, 47))
    d = ImageDraw.Draw(im)
    d.polygon([(0, 640), (400, 300), (760, 640)], fill=(30, 70, 110))
    d.polygon([(300, 640), (800, 200), (1024, 420), (1024, 640)], fill=(44, 98, 140))
    d.ellipse((780, 60, 900, 180), fill=(240, 200, 90))
    return im


def plot() -> Image.Image:
    """A line plot of two curves with anti-aliased-free lines and tick labels."""
    im = Image.new("RGB", (700, 420), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.rectangle((50, 20, 680, 380), outline=TEXT)
    x = np.arange(51, 680)
    for k, c in enumerate([(214, 39, 40), (148, 103, 189)]):
        y = 200 + 120 * np.sin(x / (40 + 25 * k)) * np.exp(-x / 900)
        d.line(list(zip(x.tolist(), y.astype(int).tolist())), fill=c, width=2)
    for k in range(7):
        d.text((45 + 105 * k, 388), f"{k * 10}", fill=TEXT)
    return im


def grey_ui() -> Image.Image:
    """A dialog in grey."""
    im = Image.new("RGB", (640, 400), PANEL)
    _window(ImageDraw.Draw(im), 10, 10, 610, 370, "Preferences", 19)
    return im.convert("L")


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in [
        ("desktop", desktop),
        ("chart", chart),
        ("diagram", diagram),
        ("wallpaper", wallpaper),
        ("plot", plot),
        ("grey-ui", grey_ui),
    ]:
        draw().save(out / f"{name}.png")


if __name__ == "__main__":
    main()
