"""Decode devkit images into the stored form (RGB uint8, shorter side 72, 72x72 center crop), in order.

Runs inside preparation worker processes, so it imports only numpy and Pillow (never torch).
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

STORED_RES = 72  # the devkit's shorter side; images are stored as STORED_RES x STORED_RES crops
BLOCK = 64  # images per decode task


def decode_image(path: str | Path, res: int = STORED_RES) -> np.ndarray:
    """Decode `path` to a (res, res, 3) uint8 array.

    Grayscale/palette/CMYK images become RGB (gray tiled to 3 channels); 16-bit grayscale (PNG modes
    I;16 and I) is scaled to 8 bit first (see ``_to_rgb``); an image whose shorter side is not `res`
    is resized isotropically so it is; the result is the center crop.

    Raises:
        OSError / ValueError / PIL.UnidentifiedImageError: missing, truncated or undecodable file.
    """
    with Image.open(path) as img:
        img.load()
        img = _to_rgb(img)
    w, h = img.size
    if min(w, h) != res:
        scale = res / min(w, h)
        w, h = max(res, round(w * scale)), max(res, round(h * scale))
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - res) // 2, (h - res) // 2
    img = img.crop((left, top, left + res, top + res))
    return np.asarray(img, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB; integer images wider than 8 bit are mapped 0..65535 -> 0..255 (value / 257).

    Pillow's own convert clips them at 255, so a 16-bit PNG became a white image. A fixed map (not a
    per-image stretch) keeps intensities comparable across images; mode I is assumed to hold 16-bit
    data (Pillow opens 16-bit PNGs as I;16 or I), values outside 0..65535 are clipped.
    """
    if img.mode.startswith("I"):
        values = np.asarray(img, dtype=np.float64).clip(0, 65535) / 257.0
        img = Image.fromarray(np.rint(values).astype(np.uint8))
    return img.convert("RGB")


def decode_many(paths: list[str]) -> list[tuple[np.ndarray | None, str]]:
    """Decode a block of files; per file (array, "") or (None, error text). Never raises (worker-safe)."""
    out: list[tuple[np.ndarray | None, str]] = []
    for path in paths:
        try:
            out.append((decode_image(path), ""))
        except FileNotFoundError:
            out.append((None, "file is missing"))
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad image to report
            out.append((None, f"cannot be decoded ({type(exc).__name__}: {exc})"))
    return out


class Decoder:
    """Decodes blocks of files in order, in-process or in a worker pool started once per preparation.

    Workers are spawned, not forked: a forked child would inherit the open HDF5 file and its lock.
    """

    def __init__(self, workers: int | None, *, pool_min_images: int = 20_000):
        """workers: processes (0/1 = in-process); None = all CPUs (at most 16) for lists of at least
        `pool_min_images` files, in-process below (a pool's start-up costs more than it saves there)."""
        self.workers, self.pool_min_images = workers, pool_min_images
        self._pool = None

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def decode(self, paths: list[str]) -> Iterator[tuple[int, list]]:
        """Yield (start index, [(array | None, error), ...]) per block, in order."""
        starts = range(0, len(paths), BLOCK)
        blocks = [paths[s : s + BLOCK] for s in starts]
        pool = self._pool_for(len(paths))
        results = pool.imap(decode_many, blocks) if pool else map(decode_many, blocks)
        yield from zip(starts, results)

    def _pool_for(self, count: int):
        workers = self.workers
        if workers is None:  # automatic: a pool only where it pays for its start-up
            workers = min(os.cpu_count() or 1, 16) if count >= self.pool_min_images else 0
        if workers <= 1:
            return None
        if self._pool is None:
            self._pool = multiprocessing.get_context("spawn").Pool(workers)
        return self._pool
