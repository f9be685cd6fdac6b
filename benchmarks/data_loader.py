"""Data pipeline throughput: preparation (JPEG decode + HDF5 write) and loader reads, in images/s.

    python benchmarks/data_loader.py [--images 50000] [--steps 200] [--workdir DIR]

1. Prepares the mini-decathlon (generated first) from its JPEG devkit, in-process and with 2 workers.
2. Writes a larger domain file (--images, tiled from the mini digits) in the prepared layout and reads
   uint8 72x72 batches of 256 at random indices: memory-mapped (the loader's path), in RAM, through a
   prefetch thread, and with plain h5py fancy indexing for comparison.
3. Runs the full MultiDomainLoader on the CPU (read + device-side augmentation) at 72 and 32 px.
Not a test; prints figures to quote.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mtl.data.batches import MultiDomainLoader, _Source  # noqa: E402
from mtl.data.mini import generate_mini_decathlon  # noqa: E402
from mtl.data.prepare import prepare_dataset  # noqa: E402
from mtl.data.store import DomainFile  # noqa: E402


def bench_prepare(workdir: Path) -> None:
    devkit = workdir / "mini_decathlon"
    start = time.perf_counter()
    generate_mini_decathlon(devkit)
    print(f"generate mini-decathlon devkit: {time.perf_counter() - start:.1f} s, "
          f"{sum(p.stat().st_size for p in devkit.rglob('*') if p.is_file()) / 1e6:.1f} MB")
    for workers in (0, 2):
        for h5 in devkit.glob("*.h5"):
            h5.unlink()
        start = time.perf_counter()
        report = prepare_dataset("mini_decathlon", devkit, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        images = sum(sum(d["counts"].values()) for d in report["domains"].values())
        print(f"prepare (decode + write), workers={workers}: {images} images in {seconds:.2f} s "
              f"= {images / seconds:,.0f} img/s")


def write_large_domain(workdir: Path, count: int) -> Path:
    """A prepared-layout file with `count` train images (tiled mini digits), attributes copied."""
    source = workdir / "mini_decathlon" / "digits.h5"
    target = workdir / "mini_decathlon" / "large.h5"
    shutil.copy(source, target)
    with h5py.File(source, "r") as src, h5py.File(target, "a") as f:
        tile = src["train/images"][...]
        del f["train"]
        g = f.create_group("train")
        images = g.create_dataset("images", shape=(count, 72, 72, 3), dtype=np.uint8)
        for start in range(0, count, len(tile)):
            images[start : start + len(tile)] = tile[: count - start]
        g.create_dataset("labels", data=np.arange(count) % 10)
        g.create_dataset("image_ids", data=np.arange(count))
        g.create_dataset("skipped_ids", data=np.zeros(0, dtype=np.int64))
        g.attrs.update({"labelled": True, "annotated": count})
    return target


def _rate(read, batches: list[np.ndarray]) -> float:
    read(batches[0])  # warm the page cache path once
    start = time.perf_counter()
    for indices in batches:
        read(indices)
    return len(batches) * len(batches[0]) / (time.perf_counter() - start)


def bench_reads(path: Path, steps: int, batch: int) -> None:
    rng = np.random.default_rng(0)
    count = DomainFile(path).split("train").images.shape[0]
    batches = [np.sort(rng.choice(count, batch, replace=False)) for _ in range(steps)]
    print(f"reads of uint8 72x72 batches of {batch}, random indices, from {count:,} images "
          f"({count * 72 * 72 * 3 / 1e9:.2f} GB file):")
    for label, in_memory in (("memory-mapped HDF5 (loader default)", False), ("in RAM (in_memory=True)", True)):
        source = _Source(DomainFile(path, in_memory=in_memory), ["train"], torch.device("cpu"))
        print(f"  {label:<40} {_rate(lambda i: source.read(i, pin=False), batches):>10,.0f} img/s")
    source = _Source(DomainFile(path), ["train"], torch.device("cpu"))
    with ThreadPoolExecutor(1) as pool:  # the loader's arrangement: reads run ahead in one thread
        start = time.perf_counter()
        received = sum(len(images) for images, _ in pool.map(lambda i: source.read(i, pin=False), batches))
        rate = received / (time.perf_counter() - start)
    print(f"  {'memory-mapped via prefetch thread':<40} {rate:>10,.0f} img/s")
    with h5py.File(path, "r") as f:
        ds = f["train/images"]
        print(f"  {'h5py fancy indexing (for comparison)':<40} "
              f"{_rate(lambda i: ds[i], batches[: max(2, steps // 10)]):>10,.0f} img/s")


def bench_loader(workdir: Path, steps: int, batch: int) -> None:
    domains = ["digits", "glyphs", "shapes", "colors", "textures", "symmetry"]
    for res in (72, 32):
        loader = MultiDomainLoader(workdir / "mini_decathlon", domains, batch_size=batch, input_res=res)
        next(loader)
        start = time.perf_counter()
        for _ in range(steps):
            next(loader)
        rate = steps * batch / (time.perf_counter() - start)
        loader.close()
        print(f"MultiDomainLoader on CPU, augmented, input_res={res}: {rate:,.0f} img/s "
              f"({torch.get_num_threads()} torch threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir, removed after)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mtl_bench_"))
    try:
        bench_prepare(workdir)
        bench_reads(write_large_domain(workdir, args.images), args.steps, args.batch)
        bench_loader(workdir, max(5, args.steps // 20), args.batch)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
