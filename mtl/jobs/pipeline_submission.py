"""The pipeline's submission.json: the searched network's test predictions with the backbone's imagenet12
ones merged in, as the original's prepare_submission concatenated exp/imgnet_test's predictions with
those of the nine-task network."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mtl.jobs.backbone import NONE, backbone_folder
from mtl.util.atomic import atomic_write_bytes


def write_pipeline_submission(run_path: Path, exp_root: Path, backbone: str, retrain: str,
                              log: logging.Logger) -> Path:
    """run_path/submission.json: the backbone run's entries (its imagenet12 test predictions), then the
    `retrain` stage's; the backbone part is left out, with a log line, when it has none."""
    entries = []
    if backbone != NONE:
        path = backbone_folder(backbone, exp_root) / "submission.json"
        if path.exists():
            entries += json.loads(path.read_text())
        else:
            log.warning("submission: backbone %s wrote no submission.json (train it with --write_submission "
                        "true); its ImageNet predictions are not merged", backbone)
    entries += json.loads((run_path / "retrain" / retrain / "submission.json").read_text())
    out = run_path / "submission.json"
    atomic_write_bytes(out, json.dumps(entries, separators=(",", ":")).encode("utf-8"))
    log.info("submission: %d test predictions in %s", len(entries), out)
    return out
