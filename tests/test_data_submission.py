"""results.json from predictions over the mini-decathlon test split round-trips to the test labels."""

from __future__ import annotations

import json

import pytest
import torch

from mtl.data.devkit import read_split
from mtl.data.batches import eval_batches

from mtl.data.submission import read_submission, write_submission


def test_submission_round_trips_to_the_released_test_labels(mini_root, tmp_path):
    predictions = {}
    for domain in ("colors", "symmetry"):
        batches = list(eval_batches(mini_root, domain, "test", batch_size=128))
        labels = torch.cat([b[1] for b in batches])  # perfect predictions: the stored test labels
        predictions[domain] = (torch.cat([b[2] for b in batches]), labels)
    path = write_submission(tmp_path / "results.json", mini_root, predictions)
    entries = json.loads(path.read_text())
    assert all(set(e) == {"image_id", "category_id"} for e in entries)
    submitted = read_submission(path)
    for domain in predictions:
        truth = json.loads((mini_root / "annotations" / f"{domain}_test.json").read_text())["annotations"]
        assert {a["image_id"]: a["category_id"] for a in truth}.items() <= submitted.items()
        assert len(read_split(mini_root, domain, "test")) == len(predictions[domain][0])
    assert len(submitted) == len(entries) == sum(len(p[0]) for p in predictions.values())
