"""Devkit reader, HDF5 preparation and submission on a hand-written 3-image devkit sample."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from mtl.data.devkit import label_of, read_domain
from mtl.data.prepare import prepare_dataset
from mtl.data.store import DomainFile
from mtl.data.submission import read_submission, write_submission
from mtl.errors import UserError

CATEGORIES = [
    {"id": 10000001, "name": "707-320", "supercategory": "aircraft"},
    {"id": 10000002, "name": "727-200", "supercategory": "aircraft"},
]
INFO = {"year": 2017, "version": "1.0", "description": "Decathlon"}


def _image(image_id: int, split: str, number: int, w: int, h: int) -> dict:
    return {"id": image_id, "width": w, "height": h, "file_name": f"data/aircraft/{split}/{number:06d}.jpg"}


def _ann(image_id: int, category_id: int) -> dict:
    return {"id": image_id, "image_id": image_id, "category_id": category_id, "segmentation": [], "area": 0,
            "bbox": [], "iscrowd": 0}


# One image per split: RGB 100x72 (train), grayscale 72x90 (val), RGB 144x144 (test: shorter side not 72).
SAMPLE = {
    "train": {"info": INFO, "licenses": [], "categories": CATEGORIES,
              "images": [_image(10200001, "train", 1, 100, 72)], "annotations": [_ann(10200001, 10000002)]},
    "val": {"info": INFO, "licenses": [], "categories": CATEGORIES,
            "images": [_image(10200002, "val", 1, 72, 90)], "annotations": [_ann(10200002, 10000001)]},
    "test_stripped": {"info": INFO, "licenses": [], "categories": CATEGORIES,
                      "images": [_image(10200003, "test", 1, 144, 144)]},
    "test": {"info": INFO, "licenses": [], "categories": CATEGORIES,
             "images": [_image(10200003, "test", 1, 144, 144)], "annotations": [_ann(10200003, 10000002)]},
}


@pytest.fixture
def sample(tmp_path) -> Path:
    """A devkit folder with the 3-image aircraft sample (annotations + real JPEG files)."""
    (tmp_path / "annotations").mkdir()
    for name, doc in SAMPLE.items():
        (tmp_path / "annotations" / f"aircraft_{name}.json").write_text(json.dumps(doc))
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test_stripped"):
        entry = SAMPLE[split]["images"][0]
        shape = (entry["height"], entry["width"]) + (() if split == "val" else (3,))
        path = tmp_path / entry["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).save(path, quality=95)
    return tmp_path


def test_reader_fields_and_label_mapping(sample):
    splits = read_domain(sample, "aircraft")
    assert splits["train"].image_ids == [10200001]
    assert splits["train"].file_names == ["data/aircraft/train/000001.jpg"]
    assert splits["train"].category_ids == [10000002] and splits["train"].labels == [1]
    assert splits["val"].labels == [0]
    assert [(c.id, c.name) for c in splits["train"].categories] == [(10000001, "707-320"), (10000002, "727-200")]
    assert splits["test"].labels == [1]  # stripped image list, labels from aircraft_test.json
    assert label_of(20000100) == 99


def test_unlabelled_test_split_without_full_labels(sample):
    (sample / "annotations" / "aircraft_test.json").unlink()
    assert read_domain(sample, "aircraft")["test"].labels is None


def test_prepare_writes_images_labels_ids_and_categories(sample):
    report = prepare_dataset("decathlon", sample, domains=["aircraft"], progress=False)
    assert report["domains"]["aircraft"]["counts"] == {"train": 1, "val": 1, "test": 1}
    file = DomainFile(sample / "aircraft.h5")
    assert [c.id for c in file.categories] == [10000001, 10000002] and file.num_classes == 2
    for split, label, image_id in (("train", 1, 10200001), ("val", 0, 10200002), ("test", 1, 10200003)):
        data = file.split(split)
        assert data.images.shape == (1, 72, 72, 3) and data.images.dtype == np.uint8
        assert data.labels.tolist() == [label] and data.image_ids.tolist() == [image_id]
    gray = file.split("val").images[0]
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    assert len(file.mean) == 3 and all(s > 0 for s in file.std)
    assert json.loads((sample / "prepare_report.json").read_text())["dataset"] == "decathlon"


def test_corrupt_jpeg_names_the_file(sample):
    bad = sample / "data/aircraft/val/000001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(UserError, match="data/aircraft/val/000001.jpg.*--skip_bad"):
        prepare_dataset("decathlon", sample, domains=["aircraft"], progress=False)
    assert not (sample / "aircraft.h5").exists()


def test_missing_file_names_the_file(sample):
    (sample / "data/aircraft/train/000001.jpg").unlink()
    with pytest.raises(UserError, match=r"data/aircraft/train/000001.jpg \(id 10200001.*missing"):
        prepare_dataset("decathlon", sample, domains=["aircraft"], progress=False)


def test_skip_bad_records_skipped_ids(sample):
    (sample / "data/aircraft/train/000001.jpg").write_bytes(b"not a jpeg")
    report = prepare_dataset("decathlon", sample, domains=["aircraft"], skip_bad=True, progress=False)
    entry = report["domains"]["aircraft"]
    assert entry["skipped"]["train"][0]["image_id"] == 10200001 and report["skipped_total"] == 1
    assert entry["counts"] == {"train": 0, "val": 1, "test": 1}
    with h5py.File(sample / "aircraft.h5", "r") as f:
        assert f["train/skipped_ids"][...].tolist() == [10200001] and f["train/images"].shape[0] == 0


def test_annotation_count_mismatch_is_a_user_error(sample):
    doc = dict(SAMPLE["train"], annotations=[])
    (sample / "annotations" / "aircraft_train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="aircraft_train.json: 1 images but 0 annotations"):
        prepare_dataset("decathlon", sample, domains=["aircraft"], progress=False)


def test_missing_devkit_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="annotations does not exist"):
        prepare_dataset("decathlon", tmp_path / "nowhere", progress=False)


def test_submission_maps_classes_back_to_category_ids(sample, tmp_path):
    prepare_dataset("decathlon", sample, domains=["aircraft"], progress=False)
    path = write_submission(tmp_path / "results.json", sample, {"aircraft": ([10200003], [1])})
    assert json.loads(path.read_text()) == [{"image_id": 10200003, "category_id": 10000002}]
    assert read_submission(path) == {10200003: 10000002}
    with pytest.raises(ValueError, match="outside 0..1"):
        write_submission(tmp_path / "bad.json", sample, {"aircraft": ([10200003], [2])})


def _root_with(sample: Path, tmp_path: Path) -> Path:
    """A data root whose decathlon/ holds the aircraft sample (the only domain with annotations)."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(sample, root / "decathlon", ignore=shutil.ignore_patterns("root"))
    return root


def test_prepare_without_domains_takes_the_present_ones_and_says_imagenet_was_skipped(cli, sample, tmp_path):
    root = _root_with(sample, tmp_path)
    result = cli("--prepare", "decathlon", "--data_dir", str(root))
    assert result.returncode == 0, result.stderr
    assert (root / "decathlon" / "aircraft.h5").exists()
    skipped = [line for line in result.stdout.splitlines() if "imagenet12" in line]
    assert len(skipped) == 1 and "skipped" in skipped[0]
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal


def test_prepare_domains_flag_chooses_and_missing_ones_are_user_errors(cli, sample, tmp_path):
    root = _root_with(sample, tmp_path)
    result = cli("--prepare", "decathlon", "--data_dir", str(root), "--domains", "aircraft")
    assert result.returncode == 0 and "imagenet12" not in result.stdout
    result = cli("--prepare", "decathlon", "--data_dir", str(root), "--domains", "aircraft,dtd")
    assert result.returncode == 2 and "dtd_train.json is missing" in result.stderr and "--domains" in result.stderr
