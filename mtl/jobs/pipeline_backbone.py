"""The pipeline's first stage: the backbone every training and the proxy's student start from.

`--backbone` empty: train it as stage `backbone` (`--backbone_config`, exp.imagenet: imagenet12, every
layer trained); a run name: use that run; `none` (no ImageNet at hand): no backbone, and every training
stage trains all its layers (last_third_only off), which the table's caption says.
"""

from __future__ import annotations

from typing import Any, Callable

from mtl.config.loader import load_config
from mtl.jobs.backbone import NONE, backbone_folder


def backbone_stage(ctx: Any, stage: Callable[..., dict], extra: dict | None = None) -> tuple[str, dict]:
    """(the backbone's run id, or "none"; the options layer of every training stage). `stage` runs a
    nested stage as pipeline._stage does (job, name, config, layers); `extra`: options of the backbone
    stage (under the user's)."""
    opts = ctx.opts
    if opts.backbone == NONE:
        return NONE, {"backbone": NONE, "last_third_only": False}
    if opts.backbone:
        backbone_folder(opts.backbone, ctx.run.exp_root)  # a UserError now rather than in every stage
        return opts.backbone, {"backbone": opts.backbone}
    task = load_config(opts.backbone_config).options.get("task_choice", "imagenet12")
    stage(ctx, "train", "backbone", opts.backbone_config,
          [{"task_choice": task, "model": "resnet26", **(extra or {})}, opts.train_options, opts.backbone_options])
    run_id = f"{ctx.run.exp_id}/backbone"
    return run_id, {"backbone": run_id}


def describe_backbone(backbone: str) -> str:
    """The table caption's words for the backbone."""
    return "no backbone (all layers trained)" if backbone == NONE else f"backbone {backbone}"
