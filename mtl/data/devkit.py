"""Read Visual Decathlon devkit annotations (COCO-style JSON) into image lists, labels and categories.

Layout: ``<root>/annotations/<domain>_{train,val,test_stripped}.json`` (plus ``<domain>_test.json`` where
full test labels are present); each image's ``file_name`` is relative to ``<root>`` (``data/<domain>/...``).
Class index = ``category_id mod 10**5 - 1``, as in the devkit loaders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mtl.errors import UserError

SPLITS = ("train", "val", "test")
ID_BASE = 10**7  # ids are code * 10**7 + k
LABEL_MODULUS = 10**5


def label_of(category_id: int) -> int:
    """Class index of a devkit category id."""
    return int(category_id) % LABEL_MODULUS - 1


@dataclass(frozen=True)
class Category:
    id: int
    name: str


@dataclass
class SplitAnnotations:
    """One split of one domain, in annotation-file order.

    Attributes:
        category_ids: per image; None for an unlabelled split (test_stripped without _test.json).
        categories: indexed by class: ``categories[k]`` has label k.
        source: the annotation file(s) read.
    """

    domain: str
    split: str
    image_ids: list[int]
    file_names: list[str]
    category_ids: list[int] | None
    categories: list[Category]
    source: list[str]

    @property
    def labels(self) -> list[int] | None:
        return None if self.category_ids is None else [label_of(c) for c in self.category_ids]

    def __len__(self) -> int:
        return len(self.image_ids)


def annotation_path(root: str | Path, domain: str, name: str) -> Path:
    """``<root>/annotations/<domain>_<name>.json`` (name: train, val, test_stripped or test)."""
    return Path(root) / "annotations" / f"{domain}_{name}.json"


def read_split(root: str | Path, domain: str, split: str) -> SplitAnnotations:
    """Read one split; for "test", image list from _test_stripped.json, labels from _test.json if present.

    Raises:
        UserError: missing or malformed annotation file, or inconsistent ids / categories.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (choices: {', '.join(SPLITS)})")
    if split != "test":
        return _parse(annotation_path(root, domain, split), domain, split, labelled=True)
    stripped, full = annotation_path(root, domain, "test_stripped"), annotation_path(root, domain, "test")
    if not stripped.exists() and full.exists():
        return _parse(full, domain, split, labelled=True)
    result = _parse(stripped, domain, split, labelled=False)
    if full.exists():
        _merge_test_labels(result, _parse(full, domain, split, labelled=True))
    return result


def read_domain(root: str | Path, domain: str) -> dict[str, SplitAnnotations]:
    """All three splits of a domain."""
    return {split: read_split(root, domain, split) for split in SPLITS}


def _load_json(path: Path) -> dict:
    if not path.exists():
        raise UserError(
            f"annotation file {path} is missing. Put the Visual Decathlon devkit under {path.parent.parent} "
            f"(annotations/<domain>_<split>.json and data/<domain>/...), or choose other domains with --domains a,b."
        )
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"annotation file {path} cannot be read as JSON ({exc}); restore it from the devkit.")
    if not isinstance(doc, dict) or "images" not in doc or "categories" not in doc:
        raise UserError(f"annotation file {path} lacks the 'images' or 'categories' list; restore it from the devkit.")
    return doc


def _parse(path: Path, domain: str, split: str, *, labelled: bool) -> SplitAnnotations:
    doc = _load_json(path)
    try:
        image_ids = [int(im["id"]) for im in doc["images"]]
        file_names = [str(im["file_name"]) for im in doc["images"]]
        categories = _categories(doc["categories"], path)
        category_ids = _image_categories(doc, image_ids, path) if labelled else None
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"annotation file {path} is malformed ({exc!r}); restore it from the devkit.")
    if len(set(image_ids)) != len(image_ids):
        raise UserError(f"annotation file {path} lists an image id twice; restore it from the devkit.")
    if category_ids is not None:
        valid = {c.id for c in categories}
        bad = next((c for c in category_ids if c not in valid), None)
        if bad is not None:
            raise UserError(f"annotation file {path} uses category id {bad}, which its 'categories' list lacks.")
    return SplitAnnotations(domain, split, image_ids, file_names, category_ids, categories, [str(path)])


def _categories(entries: list, path: Path) -> list[Category]:
    cats = sorted((Category(int(c["id"]), str(c["name"])) for c in entries), key=lambda c: label_of(c.id))
    if [label_of(c.id) for c in cats] != list(range(len(cats))):
        raise UserError(
            f"annotation file {path}: category ids must be code*10^7 + 1..K with no gaps "
            f"(got {[c.id for c in cats][:5]}...); restore it from the devkit."
        )
    return cats


def _image_categories(doc: dict, image_ids: list[int], path: Path) -> list[int]:
    by_image: dict[int, int] = {}
    for ann in doc.get("annotations", []):
        image_id = int(ann["image_id"])
        if image_id in by_image:
            raise UserError(f"annotation file {path} annotates image {image_id} twice; restore it from the devkit.")
        by_image[image_id] = int(ann["category_id"])
    missing = [i for i in image_ids if i not in by_image]
    if missing or len(by_image) != len(image_ids):
        raise UserError(
            f"annotation file {path}: {len(image_ids)} images but {len(by_image)} annotations "
            f"(first unannotated image: {missing[:1]}); restore it from the devkit."
        )
    return [by_image[i] for i in image_ids]


def _merge_test_labels(stripped: SplitAnnotations, full: SplitAnnotations) -> None:
    labels = dict(zip(full.image_ids, full.category_ids or []))
    if set(labels) != set(stripped.image_ids):
        raise UserError(
            f"{full.source[0]} and {stripped.source[0]} list different test images; "
            f"use the test labels released for this devkit version, or remove {full.source[0]}."
        )
    stripped.category_ids = [labels[i] for i in stripped.image_ids]
    stripped.source.append(full.source[0])
