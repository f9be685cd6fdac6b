"""The task-families dataset: devkit-exact, deterministic, real images, and its families oracle."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from mtl.data.devkit import ID_BASE, read_domain
from mtl.data.domains import get_dataset, task_families
from mtl.data.families import FAMILIES
from mtl.data.store import DomainFile
from mtl.meta.partition import preset, resolve_partition
from mtl.meta.structure import family_overlap, realised_masks
from mtl.errors import UserError


def _tree_digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("annotations", "data") for p in sorted((root / folder).rglob("*")) if p.is_file()}


def test_generator_is_deterministic_to_the_byte(tmp_path, families_data_dir):
    FAMILIES.generate(tmp_path / "again")
    prepared = families_data_dir / "mini_families"
    first, second = _tree_digest(prepared), _tree_digest(tmp_path / "again")
    assert len(first) > 2000 and first == second


def test_devkit_layout_ids_and_prepared_counts(families_data_dir):
    root = families_data_dir / "mini_families"
    spec = get_dataset("mini_families")
    assert [d.code for d in sorted(spec.domains, key=lambda d: d.name)] == [1, 2, 3, 4]  # alphabetical
    for domain in spec.domains:
        for split in ("train", "val", "test_stripped", "test"):
            doc = json.loads((root / "annotations" / f"{domain.name}_{split}.json").read_text())
            assert set(doc) == {"info", "images", "categories", "licenses"} | ({"annotations"} if split != "test_stripped" else set())
            assert all(i["id"] // ID_BASE == domain.code for i in doc["images"])
            assert [c["id"] for c in doc["categories"]] == [domain.code * ID_BASE + k + 1 for k in range(domain.num_classes)]
        splits = read_domain(root, domain.name)
        assert {s: len(a) for s, a in splits.items()} == {"train": 180, "val": 300, "test": 120}
        file = DomainFile(root / f"{domain.name}.h5")
        for split, ann in splits.items():
            assert file.split(split).labels.tolist() == ann.labels
            assert np.bincount(ann.labels, minlength=10).min() > 0
        with Image.open(root / json.loads((root / "annotations" / f"{domain.name}_val.json").read_text())
                        ["images"][0]["file_name"]) as image:
            assert image.size == (72, 72) and image.mode == "RGB"


def test_families_are_interleaved_pairs():
    assert task_families("mini_families", get_dataset("mini_families").names) == [
        "handwriting", "photos", "handwriting", "photos"]
    assert set(task_families("mini_decathlon", ["digits", "colors"])) == {""}


@pytest.mark.parametrize("families,channels", [(["a", "b", "a", "b"], 32), (["a", "b", "c", "a", "b", "c"], 64),
                                               (["x", "x", "y"], 256)])
def test_families_preset_realises_one_block_per_family(families, channels):
    partition = preset("families", len(families), families=families)
    forward, backward = realised_masks(partition, channels)
    k = len(set(families))
    for i, fi in enumerate(families):
        assert forward[i].sum() == round(channels / k)
        assert np.array_equal(backward[i], forward[i])
        for j, fj in enumerate(families):
            shared = int((forward[i] & forward[j]).sum())
            assert shared == (forward[i].sum() if fi == fj else 0)
    overlap = family_overlap(partition, families, channels)
    assert overlap["within"] == pytest.approx(round(channels / k) / channels) and overlap["cross"] == 0.0


def test_families_preset_needs_families():
    with pytest.raises(UserError, match="needs a dataset whose tasks belong to families"):
        resolve_partition("families", ["digits", "colors"], families=["", ""])
    with pytest.raises(UserError, match="at least two families"):
        preset("families", 2, families=["a", "a"])


def test_crossed_families_put_one_task_of_each_family_in_every_group():
    from mtl.meta.partition import crossed_families

    families = ["a", "b", "a", "b"]
    assert crossed_families(families, 0) == ["crossed0", "crossed0", "crossed1", "crossed1"]
    assert crossed_families(families, 1) == ["crossed0", "crossed1", "crossed1", "crossed0"]
    three = ["a", "b", "c"] * 3
    for shift in range(3):
        groups = crossed_families(three, shift)
        for g in set(groups):
            assert sorted(f for f, x in zip(three, groups) if x == g) == ["a", "b", "c"]
    assert len({tuple(crossed_families(three, s)) for s in range(3)}) == 3
    assert crossed_families(["a", "a", "b"]) is None  # unequal families: no crossed layout


def test_plain_variants_keep_sources_labels_and_val_split_with_less_training_data(tmp_path):
    from mtl.data.domains import get_embedded

    root = tmp_path / "mini_families_plain_90"
    get_embedded("mini_families_plain_90").generate(root)
    assert task_families("mini_families_plain_90", get_dataset("mini_families_plain_90").names) == [
        "handwriting", "photos", "handwriting", "photos"]
    for domain in get_dataset("mini_families_plain_90").domains:
        splits = read_domain(root, domain.name)
        assert {s: len(a) for s, a in splits.items()} == {"train": 90, "val": 300, "test": 210}
        assert np.bincount(splits["train"].labels, minlength=10).min() > 0


@pytest.mark.parametrize("name", ["optdigit", "mnist", "photo", "photo_detail"])
def test_plain_renderers_are_deterministic_and_draw_other_images(name):
    from mtl.data import families_render as R

    plain, overlay = getattr(R, f"render_{name}_plain"), getattr(R, f"render_{name}")
    first, again = (np.asarray(plain(3, 3, np.random.default_rng(7))) for _ in range(2))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, np.asarray(overlay(3, 3, np.random.default_rng(7))))
