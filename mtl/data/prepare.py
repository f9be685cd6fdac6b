"""Resumable devkit -> HDF5 preparation: decode every image once into ``<data_dir>/<domain>.h5``.

Each domain is written to a hidden temp file and renamed when complete, so finished domains are skipped
on a re-run and a half-written one (e.g. after a crash) is rebuilt from scratch, byte for byte the same.
Run as ``python main.py --prepare decathlon [--data_dir data] [--domains a,b]`` (or ``python -m
mtl.data.prepare decathlon --data_dir data``); data_dir is the root holding ``<dataset>/``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from mtl.data.devkit import ID_BASE, SPLITS, SplitAnnotations, read_domain
from mtl.data.domains import DATASET_CHOICES, get_dataset, get_embedded
from mtl.data.specs import DatasetSpec
from mtl.data.images import STORED_RES, Decoder
from mtl.data.store import FORMAT_VERSION, domain_file_path, is_complete
from mtl.errors import UserError
from mtl.util.atomic import atomic_write_json

AUTO_POOL_MIN_IMAGES = 20_000  # below this, worker start-up costs more than it saves
KILL_AFTER_ENV = "MTL_PREPARE_KILL_AFTER"  # test hook: SIGKILL self after writing this many images
REPORT_NAME = "prepare_report.json"


def prepare_dataset(
    name: str,
    data_dir: str | Path,
    *,
    skip_bad: bool = False,
    workers: int | None = None,
    domains: Sequence[str] | None = None,
    progress: bool | None = None,
) -> dict:
    """Prepare the HDF5 files of dataset `name` ("decathlon" or an embedded one) under `data_dir`.

    Args:
        data_dir: holds the devkit (annotations/, data/<domain>/...); the .h5 files are written beside.
            For an embedded dataset (mini_decathlon, mini_families) the devkit is generated first when missing.
        skip_bad: leave out missing/corrupt images (recorded in the report) instead of stopping.
        workers: decoding processes; None = automatic (in-process for small domains), 0/1 = in-process.
        domains: subset of domain names; default: every domain whose annotations are present (the
            others are listed in the report's "not_present"); none present is an error.
        progress: show a progress bar per domain; None = only when stderr is a terminal.

    Returns:
        The report (also written to ``<data_dir>/prepare_report.json``): per domain its status
        ("prepared" or "done"), stored and annotated counts per split, skipped images, seconds.

    Raises:
        UserError: missing folder / annotation file / image, corrupt image, or inconsistent counts.
    """
    data_dir = Path(data_dir)
    embedded = get_embedded(name)
    if embedded is not None and not embedded.has_devkit(data_dir):
        embedded.generate(data_dir)
    spec = _dataset_spec(name)
    unknown = [d for d in domains or [] if d not in spec.names]
    if unknown:
        raise UserError(f"{name} has no domain {unknown[0]!r}; choose among {', '.join(spec.names)}.")
    _check_devkit_folder(data_dir, name)
    chosen, absent = (list(domains), []) if domains else _present_domains(spec, data_dir)
    progress = sys.stderr.isatty() if progress is None else progress
    report = {"dataset": name, "data_dir": str(data_dir), "skip_bad": skip_bad, "domains": {}, "not_present": absent}
    with Decoder(workers, pool_min_images=AUTO_POOL_MIN_IMAGES) as decoder:
        for domain in chosen:
            report["domains"][domain] = _prepare_domain(spec, domain, data_dir, decoder, skip_bad, progress)
    report["skipped_total"] = sum(len(s) for d in report["domains"].values() for s in d["skipped"].values())
    atomic_write_json(data_dir / REPORT_NAME, report)
    return report


def _prepare_domain(spec: DatasetSpec, domain: str, data_dir: Path, decoder: Decoder, skip_bad: bool,
                    progress: bool) -> dict:
    """Prepare one domain unless its complete file already matches the annotations; returns its report."""
    annotations = read_domain(data_dir, domain)
    _check_categories(spec, domain, annotations)
    final = domain_file_path(data_dir, domain)
    annotated = {s: len(a) for s, a in annotations.items()}
    if is_complete(final):
        done = _stored_summary(final)
        if done["annotated"] == annotated:
            return {"status": "done", **done, "seconds": 0.0}
    tmp = final.with_name(f".{final.name}.partial")
    tmp.unlink(missing_ok=True)
    start = time.perf_counter()
    total = sum(annotated.values())
    with h5py.File(tmp, "w") as f:
        _write_header(f, spec, domain, annotations["train"])
        skipped = {s: _write_split(f, annotations[s], data_dir, decoder, skip_bad, progress) for s in SPLITS}
        _write_mean_std(f)
        _verify_counts(f, annotated, skipped, tmp)
        f.attrs["complete"] = True
    _commit(tmp, final)
    seconds = time.perf_counter() - start
    summary = _stored_summary(final)
    return {"status": "prepared", **summary, "skipped": skipped, "seconds": round(seconds, 3),
            "images_per_s": round(total / max(seconds, 1e-9), 1)}


# ----------------------------------------------------------------------------- writing


def _write_header(f: h5py.File, spec: DatasetSpec, domain: str, train: SplitAnnotations) -> None:
    d = spec.domain(domain)
    f.attrs.update({"format_version": FORMAT_VERSION, "dataset": spec.name, "domain": domain,
                    "code": d.code, "num_classes": len(train.categories), "res": STORED_RES})
    cats = f.create_group("categories")
    cats.create_dataset("ids", data=np.array([c.id for c in train.categories], dtype=np.int64))
    cats.create_dataset("names", data=[c.name for c in train.categories], dtype=h5py.string_dtype())


def _write_split(f: h5py.File, ann: SplitAnnotations, data_dir: Path, decoder: Decoder,
                 skip_bad: bool, progress: bool) -> list[dict]:
    """Decode and store one split in annotation order; returns the skipped images."""
    g = f.create_group(ann.split)
    n = len(ann)
    images = g.create_dataset("images", shape=(n, STORED_RES, STORED_RES, 3), dtype=np.uint8)
    paths = [str(data_dir / name) for name in ann.file_names]
    kept: list[int] = []
    skipped: list[dict] = []
    bar = _progress_bar(n, f"{ann.domain}/{ann.split}", progress)
    for start, results in decoder.decode(paths):
        block = []
        for i, (array, error) in enumerate(results, start):
            if array is None:
                _bad_image(ann, paths[i], i, error, skip_bad)
                skipped.append({"image_id": ann.image_ids[i], "file_name": ann.file_names[i], "error": error})
            else:
                kept.append(i)
                block.append(array)
        if block:
            images[len(kept) - len(block) : len(kept)] = np.stack(block)
        bar.update(len(results))
        _crash_hook(len(block))
    bar.close()
    if skipped:
        _shrink_images(g, len(kept))
    labels = ann.labels if ann.labels is not None else [-1] * n
    g.create_dataset("labels", data=np.array([labels[i] for i in kept], dtype=np.int64))
    g.create_dataset("image_ids", data=np.array([ann.image_ids[i] for i in kept], dtype=np.int64))
    g.create_dataset("skipped_ids", data=np.array([s["image_id"] for s in skipped], dtype=np.int64))
    g.attrs.update({"labelled": ann.category_ids is not None, "annotated": n})
    return skipped


def _bad_image(ann: SplitAnnotations, path: str, index: int, error: str, skip_bad: bool) -> None:
    if skip_bad:
        return
    raise UserError(
        f"image {path} (id {ann.image_ids[index]}, listed in {ann.source[0]}) {error}. Restore it from the "
        f"devkit archive (re-extract data/{ann.domain}), or run the preparation with --skip_bad to leave it "
        f"out and record it in {REPORT_NAME}."
    )


def _shrink_images(g: h5py.Group, count: int) -> None:
    """Replace the images dataset by one holding only its first `count` rows (after skipped images)."""
    old = g["images"]
    new = g.create_dataset("images_kept", shape=(count,) + old.shape[1:], dtype=np.uint8)
    for start in range(0, count, 4096):
        new[start : start + 4096] = old[start : min(start + 4096, count)]
    del g["images"]
    g.move("images_kept", "images")


def _write_mean_std(f: h5py.File) -> None:
    """Per-channel mean/std of the train pixels in [0, 1], from exact value histograms (order-independent)."""
    images = f["train/images"]
    histogram = np.zeros((3, 256), dtype=np.int64)
    for start in range(0, len(images), 1024):
        block = images[start : start + 1024]
        for c in range(3):
            histogram[c] += np.bincount(block[..., c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    count = max(1, int(histogram[0].sum()))
    mean = histogram @ values / count
    std = np.sqrt(np.maximum(histogram @ values**2 / count - mean**2, 0.0))
    if len(images) == 0:
        mean, std = np.full(3, 0.5), np.full(3, 0.25)
    f.attrs["mean"] = mean
    f.attrs["std"] = np.maximum(std, 1e-3)


def _verify_counts(f: h5py.File, annotated: dict, skipped: dict, path: Path) -> None:
    for split, n in annotated.items():
        g = f[split]
        stored = {len(g["images"]), len(g["labels"]), len(g["image_ids"])}
        if stored != {n - len(skipped[split])}:
            raise UserError(f"{path}: split {split} holds {stored} images, expected {n - len(skipped[split])}; "
                            f"delete it and run the preparation again.")


def _commit(tmp: Path, final: Path) -> None:
    """fsync the finished temp file, rename it onto `final`, fsync the folder (the rename is durable)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    folder = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _stored_summary(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {
            "counts": {s: int(len(f[s]["labels"])) for s in SPLITS},
            "annotated": {s: int(f[s].attrs["annotated"]) for s in SPLITS},
            "skipped": {s: [{"image_id": int(i)} for i in f[s]["skipped_ids"][...]] for s in SPLITS},
        }


# ----------------------------------------------------------------------------- checks


def _present_domains(spec: DatasetSpec, data_dir: Path) -> tuple[list[str], list[str]]:
    """(domains whose annotation files are all there, the others); UserError when none is."""
    from mtl.data.devkit import annotation_path

    def present(domain: str) -> bool:
        return all(annotation_path(data_dir, domain, s).is_file() for s in ("train", "val", "test_stripped"))

    chosen = [d for d in spec.names if present(d)]
    if not chosen:
        raise UserError(f"{data_dir / 'annotations'} holds no complete domain (<domain>_train.json, _val.json, "
                        f"_test_stripped.json) of {spec.name}; put the devkit there (see setup_cloud.sh).")
    return chosen, [d for d in spec.names if d not in chosen]


def _dataset_spec(name: str) -> DatasetSpec:
    try:
        return get_dataset(name)
    except ValueError as exc:
        raise UserError(f"cannot prepare: {exc}") from None


def _check_devkit_folder(data_dir: Path, name: str) -> None:
    if not (data_dir / "annotations").is_dir():
        raise UserError(
            f"{data_dir / 'annotations'} does not exist. Put the {name} devkit there: annotations/"
            f"<domain>_{{train,val,test_stripped}}.json and the images under data/<domain>/ (setup_cloud.sh "
            f"downloads and extracts them), or pass --data_dir D where D/{name}/ holds the devkit."
        )


def _check_categories(spec: DatasetSpec, domain: str, annotations: dict[str, SplitAnnotations]) -> None:
    code = spec.domain(domain).code
    train = annotations["train"]
    wrong = [c.id for c in train.categories if c.id // ID_BASE != code]
    if wrong:
        raise UserError(f"{train.source[0]}: category id {wrong[0]} does not carry {domain}'s code {code} "
                        f"(ids must be {code}*10^7 + k); is this the right annotation file?")
    for split, ann in annotations.items():
        if [c.id for c in ann.categories] != [c.id for c in train.categories]:
            raise UserError(f"{ann.source[0]}: its categories differ from {train.source[0]}'s; "
                            f"restore both from the devkit.")


# ----------------------------------------------------------------------------- decoding


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False, file=sys.stderr)


_written_in_process = 0


def _crash_hook(count: int) -> None:
    """Test hook: with MTL_PREPARE_KILL_AFTER=N, die by SIGKILL once N images were written (a crash)."""
    global _written_in_process
    limit = os.environ.get(KILL_AFTER_ENV)
    if not limit:
        return
    _written_in_process += count
    if _written_in_process >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- command line


def ensure_embedded(name: str, data_root: str | Path = "data", *, progress: bool = False) -> Path:
    """``data_root/<name>``, generated and prepared to HDF5 first if missing (fast when present)."""
    dataset = get_embedded(name)
    root = Path(data_root) / name

    def ready() -> bool:
        return dataset.has_devkit(root) and all(is_complete(domain_file_path(root, d.spec.name))
                                                for d in dataset.domains)

    if ready():  # no lock needed to read a finished folder (which may be read-only)
        return root
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / ".lock"):
        if not ready():
            prepare_dataset(name, root, progress=progress)
    return root


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_command(name: str, data_dir: str, skip_bad: bool, workers: int | None, domains: str | None = None) -> int:
    """Convert data_dir/<name>/ to HDF5 (generating the mini-decathlon first when asked for it): the
    comma list `domains`, or every domain whose annotations are present."""
    folder = Path(data_dir) / name
    chosen = [d.strip() for d in domains.split(",") if d.strip()] if domains else None
    report = prepare_dataset(name, folder, skip_bad=skip_bad, workers=workers, domains=chosen)
    for domain in report.get("not_present", []):
        sys.stdout.write(f"  {domain:<16} skipped: its annotations are not in {folder / 'annotations'}\n")
    for domain, entry in report["domains"].items():
        sys.stdout.write(f"  {domain:<16} {entry.get('status', '')}\n")
    sys.stdout.write(f"prepared {name} in {folder} (report: {folder / REPORT_NAME}; "
                     f"{report['skipped_total']} image(s) skipped)\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtl.data.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=list(DATASET_CHOICES))
    parser.add_argument("--data_dir", default="data", help="data root holding <dataset>/ (as main.py's)")
    parser.add_argument("--skip_bad", action="store_true", help="skip missing/corrupt images, report them")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: auto)")
    parser.add_argument("--domains", default=None, help="comma-separated subset of domains (default: every "
                        "domain whose annotations are present)")
    args = parser.parse_args(argv)
    try:
        return prepare_command(args.dataset, args.data_dir, args.skip_bad, args.workers, args.domains)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
