"""Embedded datasets: deterministic generators writing small datasets in the Visual Decathlon devkit layout.

An `EmbeddedDataset` writes ``root/annotations/<domain>_{train,val,test_stripped,test}.json`` and
``root/data/<domain>/<split>/NNNNNNN.jpg`` exactly as the devkit does (same JSON keys, id encoding
code*10^7 + k, JPEGs with shorter side 72), so the real reader and preparation always run on them.
The datasets themselves: mtl/data/mini.py (the mini-decathlon) and mtl/data/families.py (task families
with a known best partition), listed by name in mtl/data/domains.py; `ensure_embedded(name, data_root)`
(mtl/data/prepare.py) builds and prepares one under ``data_root/<name>`` when missing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from mtl.data.devkit import ID_BASE
from mtl.data.specs import DatasetSpec, DomainSpec
from mtl.util.atomic import atomic_write_bytes, atomic_write_json

SPLIT_FRACTIONS = (0.6, 0.2)  # default train, val; test = the rest
IMAGE_ID_OFFSET = 200001  # devkit image ids: code * 10^7 + 200001 + running index over train, val, test

Renderer = Callable[[int, int, np.random.Generator], Image.Image]


@dataclass(frozen=True)
class EmbeddedDomain:
    """A generated domain: its spec, class names, images per class and renderer (index, label, rng) -> image.

    `source_labels`, when given, returns the label of every source image (a real dataset's own
    images, rendered by index); `per_class` is then ignored.
    """

    spec: DomainSpec
    class_names: tuple[str, ...]
    per_class: int
    render: Renderer
    source_labels: Callable[[], np.ndarray] | None = None

    def labels(self) -> np.ndarray:
        """Class label per source image."""
        if self.source_labels is not None:
            return self.source_labels()
        return np.repeat(np.arange(len(self.class_names)), self.per_class)


@dataclass(frozen=True)
class EmbeddedDataset:
    """A generated dataset: its registered spec, generator version (bump it when images change) and seed."""

    name: str
    domains: tuple[EmbeddedDomain, ...]
    version: int
    seed: int
    title: str  # in the annotation files' "description"
    split_fractions: tuple[float, float] = SPLIT_FRACTIONS  # train, val; test = the rest

    @property
    def spec(self) -> DatasetSpec:
        return DatasetSpec(self.name, tuple(d.spec for d in self.domains))

    @property
    def marker(self) -> str:
        return f"{self.name}.json"

    def has_devkit(self, root: str | Path) -> bool:
        """Whether `root` holds a complete devkit of the current generator version."""
        try:
            return json.loads((Path(root) / self.marker).read_text()).get("generator_version") == self.version
        except (OSError, ValueError):
            return False

    def generate(self, root: str | Path) -> Path:
        """Write the devkit under `root` (replacing a partial one); returns `root`."""
        root = Path(root)
        (root / self.marker).unlink(missing_ok=True)
        for domain in self.domains:
            shutil.rmtree(root / "data" / domain.spec.name, ignore_errors=True)
            (root / f"{domain.spec.name}.h5").unlink(missing_ok=True)  # prepared from an older devkit
            _write_domain(root, domain, self.seed, self.title, self.split_fractions)
        summary = {"generator_version": self.version, "seed": self.seed,
                   "domains": [d.spec.name for d in self.domains]}
        atomic_write_json(root / self.marker, summary)
        return root


# ----------------------------------------------------------------------------- one domain


def _write_domain(root: Path, domain: EmbeddedDomain, seed: int, title: str,
                  split_fractions: tuple[float, float]) -> None:
    spec = domain.spec
    labels = domain.labels()
    order = np.random.default_rng([seed, spec.code]).permutation(len(labels))
    # order[p] = source image at position p; positions 0..n_train-1 are train, then val, then test
    n_train = round(split_fractions[0] * len(order))
    n_val = round(split_fractions[1] * len(order))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(order))}
    categories = [{"id": spec.code * ID_BASE + k + 1, "name": name, "supercategory": spec.name}
                  for k, name in enumerate(domain.class_names)]
    for split, (lo, hi) in bounds.items():
        images, annotations = [], []
        for number, position in enumerate(range(lo, hi), start=1):
            source = int(order[position])
            image_id = spec.code * ID_BASE + IMAGE_ID_OFFSET + position
            file_name = f"data/{spec.name}/{split}/{number:07d}.jpg"
            image = domain.render(source, int(labels[source]), np.random.default_rng([seed, spec.code, source]))
            save_jpeg(image, root / file_name)
            images.append({"id": image_id, "width": image.width, "height": image.height, "file_name": file_name})
            annotations.append({"id": image_id, "image_id": image_id,
                                "category_id": categories[int(labels[source])]["id"],
                                "segmentation": [], "area": 0, "bbox": [], "iscrowd": 0})
        write_split_json(root, spec.name, split, images, annotations, categories, title)


def save_jpeg(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90)


def write_split_json(root: Path, domain: str, split: str, images: list, annotations: list,
                      categories: list, title: str) -> None:
    info = {"year": 2017, "version": "1.0", "description": f"Decathlon ({title} generated by mtl)",
            "contributor": "mtl", "url": "", "date_created": "2017"}
    doc = {"info": info, "images": images, "annotations": annotations, "categories": categories,
           "licenses": []}
    folder = root / "annotations"
    if split == "test":
        _write_json(folder / f"{domain}_test.json", doc)
        doc = {k: v for k, v in doc.items() if k != "annotations"}
        _write_json(folder / f"{domain}_test_stripped.json", doc)
    else:
        _write_json(folder / f"{domain}_{split}.json", doc)


def _write_json(path: Path, doc: dict) -> None:
    """Compact JSON, as the devkit ships it."""
    atomic_write_bytes(path, json.dumps(doc, separators=(",", ":")).encode("utf-8"))
