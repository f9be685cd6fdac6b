"""Image renderers of the mini-decathlon domains: one function per domain, (index, label, rng) -> PIL image.

Design (why these domains): digits (real, scikit-learn) and glyphs (rendered font characters) share
stroke features and are not flip-safe; shapes and colors draw from the *same* scene generator but label
different properties (shape vs. object colour), so their invariances conflict; textures and symmetry share
oriented, periodic low-level structure with shapes' backgrounds but need global (symmetry) or local
(texture) statistics. Everything is a pure function of the numpy Generator passed in (deterministic).
"""

from __future__ import annotations

import colorsys
import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

RES = 72
GLYPHS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrty#&"  # 40 classes
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon")
COLORS = ("red", "green", "blue", "gray")  # hues 120 degrees apart: robust to the hue jitter of training
TEXTURES = ("horizontal", "vertical", "diagonal", "checker", "dot_grid", "speckles", "rings", "waves",
            "lattice", "crosshatch", "blotches", "grain")
SYMMETRY = ("asymmetric", "symmetric")


# ----------------------------------------------------------------------------- digits (real images)


@lru_cache(maxsize=1)
def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits: (1797, 8, 8) uint8 in 0..255 and labels 0..9.

    Reads the CSV scikit-learn ships (what ``load_digits`` reads) without importing scikit-learn,
    which costs seconds; falls back to ``load_digits`` if the file moved.
    """
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else None
    if path is not None and path.exists():
        table = np.loadtxt(path, delimiter=",")
        pixels, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels, labels = digits.images, digits.target
    return np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8), labels.astype(np.int64)


def render_digit(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """Digit `index` of scikit-learn's set, upscaled to 56-64 px and placed on a 72 px canvas."""
    images, _ = load_digits_data()
    size = int(rng.integers(56, 65))
    digit = Image.fromarray(images[index], "L").resize((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (RES, RES), 0)
    canvas.paste(digit, tuple(int(v) for v in rng.integers(0, RES - size + 1, size=2)))
    return canvas


# ----------------------------------------------------------------------------- glyphs


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def render_glyph(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """Character GLYPHS[label] in Pillow's bundled font: random size, stroke, rotation and offset."""
    canvas = Image.new("L", (RES, RES), 0)
    draw = ImageDraw.Draw(canvas)
    center = RES / 2 + rng.uniform(-5, 5, size=2)
    draw.text(tuple(center), GLYPHS[label], fill=int(rng.integers(180, 256)), anchor="mm",
              font=_font(int(rng.integers(34, 50))), stroke_width=int(rng.integers(0, 2)),
              stroke_fill=255)
    canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    noise = rng.normal(0, 8, size=(RES, RES))
    return Image.fromarray(np.clip(np.asarray(canvas, np.float64) + noise, 0, 255).astype(np.uint8), "L")


# ----------------------------------------------------------------------------- shapes and colors


def _color(name: str, rng: np.random.Generator) -> tuple[int, int, int]:
    value = rng.uniform(0.55, 1.0)
    if name == "gray":
        return tuple(int(255 * value) for _ in range(3))
    hue = {"red": 0.0, "green": 1 / 3, "blue": 2 / 3}[name] + rng.uniform(-0.04, 0.04)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.6, 1.0), value))


def _polygon(cx: float, cy: float, r: float, angle: float, sides: int, inner: float | None) -> list:
    """Regular polygon (inner None) or a star/rhombus alternating radii r and r * inner."""
    count = sides if inner is None else 2 * sides
    radii = [r if inner is None or k % 2 == 0 else r * inner for k in range(count)]
    return [(cx + rad * math.cos(angle + 2 * math.pi * k / count), cy + rad * math.sin(angle + 2 * math.pi * k / count))
            for k, rad in enumerate(radii)]


_POLYGONS = {"square": (4, None), "triangle": (3, None), "hexagon": (6, None), "star": (5, 0.45),
             "diamond": (2, 0.55)}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float,
                fill: tuple) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(3, int(r / 3)))
    elif shape == "cross":
        for a in (angle, angle + math.pi / 2):
            dx, dy = r * math.cos(a), r * math.sin(a)
            draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=fill, width=max(4, int(r / 2.5)))
    else:
        draw.polygon(_polygon(cx, cy, r, angle, *_POLYGONS[shape]), fill=fill)


def render_scene(shape: str, color: str, rng: np.random.Generator) -> Image.Image:
    """One filled shape in one colour on a dim, noisy gradient background."""
    base = rng.uniform(20, 90, size=3)
    ramp = np.linspace(-1, 1, RES)[None, :, None] * rng.uniform(-25, 25, size=3)
    background = base + ramp + rng.normal(0, 6, size=(RES, RES, 3))
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8), "RGB")
    r = rng.uniform(14, 24)
    cx, cy = rng.uniform(r + 4, RES - r - 4, size=2)
    _draw_shape(ImageDraw.Draw(canvas), shape, cx, cy, r, rng.uniform(0, 2 * math.pi), _color(color, rng))
    return canvas.filter(ImageFilter.GaussianBlur(0.6))


def render_shape(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    return render_scene(SHAPES[label], COLORS[int(rng.integers(len(COLORS)))], rng)


def render_colored(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    return render_scene(SHAPES[int(rng.integers(len(SHAPES)))], COLORS[label], rng)


# ----------------------------------------------------------------------------- textures


def _texture_field(name: str, x: np.ndarray, y: np.ndarray, period: float, rng: np.random.Generator):
    """A pattern in [0, 1] over rotated coordinates (x, y)."""
    w = 2 * math.pi / period
    if name in ("horizontal", "vertical", "diagonal"):
        return (np.sin((y if name == "horizontal" else x) * w) > 0).astype(float)
    if name in ("checker", "lattice", "crosshatch", "dot_grid"):
        sx, sy = np.sin(x * w), np.sin(y * w)
        return {"checker": (sx * sy > 0), "lattice": (np.abs(sx) < 0.3) | (np.abs(sy) < 0.3),
                "crosshatch": (np.abs(np.sin((x + y) * w / 1.4)) < 0.3) | (np.abs(np.sin((x - y) * w / 1.4)) < 0.3),
                "dot_grid": (sx * sx + sy * sy > 1.4)}[name].astype(float)
    if name == "rings":
        return (np.sin(np.hypot(x, y) * w) > 0).astype(float)
    if name == "waves":
        return (np.sin((y + 4 * np.sin(x * w / 2)) * w) > 0).astype(float)
    noise = rng.normal(size=x.shape)
    if name == "speckles":
        return (noise > 1.6).astype(float)
    if name == "grain":
        return np.clip(0.5 + 0.35 * noise, 0, 1)
    blur = np.asarray(Image.fromarray(((noise + 4) * 30).astype(np.uint8)).filter(ImageFilter.GaussianBlur(4)))
    return (blur > np.median(blur)).astype(float)  # blotches


def render_texture(index: int, label: int, rng: np.random.Generator, size=(96, RES)) -> Image.Image:
    """Texture TEXTURES[label] at a random scale, orientation jitter and two random colours (96x72)."""
    name = TEXTURES[label]
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    angle = (math.pi / 4 * rng.choice([-1, 1]) if name == "diagonal" else 0.0) + rng.uniform(-0.15, 0.15)
    xr = (xx - w / 2) * math.cos(angle) - (yy - h / 2) * math.sin(angle)
    yr = (xx - w / 2) * math.sin(angle) + (yy - h / 2) * math.cos(angle)
    field = _texture_field(name, xr + rng.uniform(0, 20), yr + rng.uniform(0, 20), rng.uniform(7, 14), rng)
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    image = c0 + field[..., None] * (c1 - c0) + rng.normal(0, 6, size=(h, w, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------- symmetry


def render_symmetry(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """Blobs mirrored about the vertical axis; 'asymmetric' moves one blob's mirror image up or down."""
    canvas = Image.new("RGB", (RES, RES), tuple(int(v) for v in rng.integers(0, 60, size=3)))
    draw = ImageDraw.Draw(canvas)
    count = int(rng.integers(3, 7))
    moved = int(rng.integers(count)) if SYMMETRY[label] == "asymmetric" else -1
    for k in range(count):
        x, y, r = rng.uniform(4, RES / 2 - 2), rng.uniform(10, RES - 10), rng.uniform(4, 10)
        fill = tuple(int(v) for v in rng.integers(80, 256, size=3))
        shift = rng.choice([-1, 1]) * rng.uniform(10, 18) if k == moved else 0.0
        for cx, cy in ((x, y), (RES - 1 - x, float(np.clip(y + shift, r, RES - r)))):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    noise = rng.normal(0, 5, size=(RES, RES, 3))
    return Image.fromarray(np.clip(np.asarray(canvas, np.float64) + noise, 0, 255).astype(np.uint8), "RGB")
