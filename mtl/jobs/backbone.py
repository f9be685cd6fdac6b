"""A pretrained backbone (the original's ImageNet model) loaded into a ResNet-26 of other tasks.

The original loaded `finetuned/0/snapshot_model`, a ResNet-26 trained on the decathlon's imagenet12,
into every run (`imagenet_pretrained=1`) and copied its BatchNorms into every task's. Here the
backbone is any finished train run (`exp.imagenet`): its stem, stages and BatchNorms go into every
task of the model, its final BatchNorm into every task's too (the original filled only task 0's,
leaving the others at their initial values), its heads nowhere. A multi-task backbone (e.g. share_all
on the tasks themselves, where no ImageNet exists, as on the task-families benchmark) must share its
convolutions (a plain ResNet-26); a task it learned takes its own BatchNorms, any other its first task's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from mtl.errors import UserError
from mtl.util.atomic import read_json
from mtl.util.checkpoint import CheckpointStore

NONE = "none"  # --backbone none: no pretrained weights (every layer trains)
BN_PREFIXES = ("stem_bn", "stages", "final_bn")


def check_backbone_choice(last_third_only: bool, backbone: str) -> None:
    """UserError for last_third_only without a backbone: it would freeze a random trunk."""
    if last_third_only and backbone in ("", NONE):
        raise UserError(
            "--last_third_only freezes the stem and the first two stages, so it needs pretrained weights there: "
            "give --backbone RUN (a finished ImageNet run, e.g. python main.py -e imagenet --config exp.imagenet), "
            "or train every layer with --last_third_only false.")


def check_backbone(backbone: str, exp_root: str | Path) -> None:
    """UserError, before the run folder exists, for a backbone run that is missing, unfinished or
    partitioned (what `load_backbone` would refuse inside the run)."""
    if backbone not in ("", NONE):
        backbone_weights(backbone, exp_root)


def backbone_folder(source: str, exp_root: str | Path) -> Path:
    """The run folder `source` names (exp/<id>, <id> under exp_root, or a path); UserError otherwise."""
    root = Path(exp_root)
    for candidate in (root / source.removeprefix("exp/"), root / source, Path(source)):
        if (candidate / "checkpoints").is_dir():
            return candidate
    raise UserError(f"--backbone {source}: no run folder with checkpoints under {root} (train one with "
                    "python main.py -e imagenet --config exp.imagenet, or give --backbone none).")


def backbone_weights(source: str, exp_root: str | Path) -> tuple[list[str], dict, Path]:
    """(the backbone's tasks, its model state_dict, its folder) from its best (else latest) checkpoint."""
    folder = backbone_folder(source, exp_root)
    loaded = CheckpointStore(folder / "checkpoints").load_best() or CheckpointStore(folder / "checkpoints").load_latest()
    if loaded is None:
        raise UserError(f"--backbone {source}: {folder} has no usable checkpoint (is the run finished?).")
    weights = loaded[1]["model"]
    tasks = list(dict.fromkeys(k.split(".")[1] for k in weights if k.startswith("heads.")))
    if not tasks:
        raise UserError(f"--backbone {source}: {folder} has no task heads; is it a train run?")
    if "partition_raw" in weights:
        raise UserError(f"--backbone {source}: {folder} is a partitioned run; a backbone shares its "
                        "convolutions (train it with --model resnet26).")
    return tasks, weights, folder


def load_backbone(model: nn.Module, source: str, exp_root: str | Path, log: logging.Logger | None = None) -> int:
    """Copy the backbone run's trunk, stages and BatchNorms into every task of `model`; returns the
    number of tensors copied. UserError when the shapes differ (another width)."""
    tasks, weights, folder = backbone_weights(source, exp_root)
    source_of = {t: t if t in tasks else tasks[0] for t in model.task_names}  # whose BatchNorms each task takes
    own = model.state_dict()
    copied = {}
    for key, value in weights.items():
        if key.startswith("heads."):
            continue
        parts = key.split(".")
        targets = [key]
        bn_task = next((p for p in parts if p in tasks), None) if parts[0] in BN_PREFIXES else None
        if bn_task is not None:
            at = parts.index(bn_task)
            targets = [".".join(parts[:at] + [t] + parts[at + 1:]) for t, s in source_of.items() if s == bn_task]
        for target in targets:
            if target not in own:
                continue
            if own[target].shape != value.shape:
                width = read_json(folder / "config.json").get("options", {}).get("width")
                raise UserError(f"--backbone {source}: {target} has shape {list(value.shape)} there and "
                                f"{list(own[target].shape)} here (backbone width {width}); use a backbone of "
                                "the same width.")
            copied[target] = value
    model.load_state_dict(copied, strict=False)
    if log is not None:
        log.info("backbone %s (%s): %d tensors copied into tasks %s", folder, ", ".join(tasks), len(copied),
                 ", ".join(model.task_names))
    return len(copied)
