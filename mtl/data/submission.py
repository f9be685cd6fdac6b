"""Write the decathlon evaluation server's ``results.json``: a list of {image_id, category_id}."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import torch

from mtl.data.store import DomainFile, domain_file_path
from mtl.errors import UserError
from mtl.util.atomic import atomic_write_bytes


def category_ids(data_dir: str | Path, domain: str) -> list[int]:
    """Devkit category id per class index of `domain`, from its prepared file."""
    return [c.id for c in DomainFile(domain_file_path(data_dir, domain)).categories]


def build_results(data_dir: str | Path, predictions: Mapping[str, tuple[Sequence[int], Sequence[int]]]) -> list[dict]:
    """[{image_id, category_id}, ...] over the domains in `predictions` (in their order).

    Args:
        data_dir: folder with the prepared ``<domain>.h5`` files (their category lists map classes back).
        predictions: domain -> (image ids, predicted class indices), sequences or 1-D tensors.
    """
    results: list[dict] = []
    for domain, (image_ids, classes) in predictions.items():
        ids, predicted = _as_list(image_ids), _as_list(classes)
        if len(ids) != len(predicted):
            raise ValueError(f"{domain}: {len(ids)} image ids but {len(predicted)} predictions")
        categories = category_ids(data_dir, domain)
        bad = next((c for c in predicted if not 0 <= c < len(categories)), None)
        if bad is not None:
            raise ValueError(f"{domain}: predicted class {bad} outside 0..{len(categories) - 1}")
        results.extend({"image_id": i, "category_id": categories[c]} for i, c in zip(ids, predicted))
    return results


def write_submission(path: str | Path, data_dir: str | Path,
                     predictions: Mapping[str, tuple[Sequence[int], Sequence[int]]]) -> Path:
    """Write ``results.json`` atomically (temp file, fsync, rename); returns its path."""
    path = Path(path)
    results = build_results(data_dir, predictions)
    atomic_write_bytes(path, json.dumps(results, separators=(",", ":")).encode("utf-8"))
    return path


def read_submission(path: str | Path) -> dict[int, int]:
    """image_id -> category_id of a results.json (e.g. to score it against the test labels)."""
    try:
        entries = json.loads(Path(path).read_text())
        return {int(e["image_id"]): int(e["category_id"]) for e in entries}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a decathlon results.json ({exc}); write it again.") from None


def _as_list(values) -> list[int]:
    if isinstance(values, torch.Tensor):
        return [int(v) for v in values.tolist()]
    return [int(v) for v in values]
