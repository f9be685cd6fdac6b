"""The embedded mini-decathlon: devkit format, sizes, determinism, and its prepared HDF5 files."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from mtl.data.devkit import read_domain
from mtl.data.domains import get_dataset
from mtl.data.mini import MINI_DOMAINS
from mtl.data.prepare import ensure_embedded
from mtl.data.store import DomainFile


def test_spec_is_registered_with_alphabetical_codes():
    spec = get_dataset("mini_decathlon")
    assert len(spec.domains) >= 5
    codes = {d.name: d.code for d in spec.domains}
    assert [codes[n] for n in sorted(codes)] == list(range(1, len(codes) + 1))
    assert min(d.num_classes for d in spec.domains) == 2 and max(d.num_classes for d in spec.domains) <= 50
    assert {d.name for d in spec.domains if not d.flip_safe} == {"digits", "glyphs"}


def test_devkit_layout_and_json_format(mini_root):
    for name in get_dataset("mini_decathlon").names:
        annotations = mini_root / "annotations"
        for split in ("train", "val", "test_stripped", "test"):
            doc = json.loads((annotations / f"{name}_{split}.json").read_text())
            assert set(doc) == ({"info", "images", "categories", "licenses"} | ({"annotations"} if split != "test_stripped" else set()))
            image = doc["images"][0]
            assert set(image) == {"id", "width", "height", "file_name"}
            assert image["file_name"].startswith(f"data/{name}/{'test' if split.startswith('test') else split}/")
            with Image.open(mini_root / image["file_name"]) as img:
                assert min(img.size) == 72 and img.format == "JPEG"
        code = get_dataset("mini_decathlon").domain(name).code
        ann = doc["annotations"][0]
        assert set(ann) >= {"id", "image_id", "category_id"} and ann["category_id"] // 10**7 == code
        assert all(c["supercategory"] == name and c["id"] // 10**7 == code for c in doc["categories"])


def test_sizes_and_prepared_counts_match_annotations(mini_root):
    totals = {}
    for name in get_dataset("mini_decathlon").names:
        splits = read_domain(mini_root, name)
        file = DomainFile(mini_root / f"{name}.h5")
        for split, ann in splits.items():
            data = file.split(split)
            assert len(data) == len(ann) and data.image_ids.tolist() == ann.image_ids
            assert data.labels.tolist() == ann.labels  # full test labels are stored too
        totals[name] = sum(len(a) for a in splits.values())
    assert 300 <= min(totals.values()) and max(totals.values()) <= 5000
    assert get_dataset("mini_decathlon").domain("digits").num_classes == 10


def test_renderers_are_deterministic():
    for domain in MINI_DOMAINS:
        for index in (0, 7):
            first = domain.render(index, 1, np.random.default_rng([1, index]))
            second = domain.render(index, 1, np.random.default_rng([1, index]))
            assert np.array_equal(np.asarray(first), np.asarray(second))


def test_ensure_is_fast_when_present(mini_root):
    before = (mini_root / "digits.h5").stat().st_mtime_ns
    start = time.perf_counter()
    assert ensure_embedded("mini_decathlon", mini_root.parent) == mini_root
    assert time.perf_counter() - start < 2.0
    assert (mini_root / "digits.h5").stat().st_mtime_ns == before
