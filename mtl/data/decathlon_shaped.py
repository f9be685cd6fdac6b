"""A Visual-Decathlon-shaped devkit in seconds: the ten real domains, codes and class counts, a few
tiny images per class, the devkit's JSON layout and id encoding, for exercising the full-size path
(1000-class imagenet12, 1623-class omniglot, the ten-domain submission) on a CPU.

    generate_decathlon_shaped(root)   # root/annotations/<domain>_{train,val,test_stripped,test}.json
                                      # root/data/<domain>/<split>/NNNNNN.jpg (72 x 72 JPEGs)

Ids as the devkit's: category_id = code * 10^7 + k (k = 1..K), image_id = code * 10^7 + 200001 + a
running index over train, val, test. Each image is a flat colour of its class plus noise, so the
classes are learnable in principle; the numbers mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mtl.data.devkit import ID_BASE
from mtl.data.domains import DECATHLON
from mtl.data.embedded import IMAGE_ID_OFFSET, save_jpeg, write_split_json

SIDE = 72  # the devkit's shorter side


def generate_decathlon_shaped(root: str | Path, *, train_per_class: int = 1, val_images: int = 8,
                              test_images: int = 8, seed: int = 0, domains: list[str] | None = None) -> Path:
    """Write the devkit under `root` (one `train_per_class` images of every class for training, the first
    `val_images` / `test_images` classes once each for val / test); returns `root`."""
    root = Path(root)
    for spec in DECATHLON.domains:
        if domains is None or spec.name in domains:
            _write_domain(root, spec, train_per_class, val_images, test_images, seed)
    return root


def _write_domain(root: Path, spec, train_per_class: int, val_images: int, test_images: int, seed: int) -> None:
    k = spec.num_classes
    categories = [{"id": spec.code * ID_BASE + c + 1, "name": f"{spec.name}_{c + 1:04d}", "supercategory": spec.name}
                  for c in range(k)]
    rng = np.random.default_rng([seed, spec.code])
    colours = rng.integers(0, 256, size=(k, 3))
    splits = {"train": np.repeat(np.arange(k), train_per_class), "val": np.arange(min(val_images, k)),
              "test": np.arange(min(test_images, k))}
    position = 0
    for split, labels in splits.items():
        images, annotations = [], []
        for number, label in enumerate(labels, start=1):
            image_id = spec.code * ID_BASE + IMAGE_ID_OFFSET + position
            position += 1
            file_name = f"data/{spec.name}/{split}/{number:06d}.jpg"
            pixels = np.clip(colours[label] + rng.normal(0, 20, size=(SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
            save_jpeg(Image.fromarray(pixels), root / file_name)
            images.append({"id": image_id, "width": SIDE, "height": SIDE, "file_name": file_name})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": categories[int(label)]["id"],
                                "segmentation": [], "area": 0, "bbox": [], "iscrowd": 0})
        write_split_json(root, spec.name, split, images, annotations, categories, "decathlon-shaped devkit")
