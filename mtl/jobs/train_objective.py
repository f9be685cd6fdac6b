"""The `train` objective: score a candidate by a full training run (a nested train run per candidate).

The original's worker_mode=cmd (reference/original-system.md §3.4) without subprocesses: a candidate's
params become train options, the run lives under exp/<search>/trials/<slug>, and a candidate whose
training was cut short (SIGKILL, SIGTERM) continues from its own checkpoint when evaluated again.

Params map to train options: `partition` (raw [2, N, N]) -> a partition file; `share_amt` ->
`--partition share_fixed:<s>`; any other name must be a train option (lr, weight_decay, dropout, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtl.config.options import option_fields
from mtl.data.domains import task_families
from mtl.errors import UserError
from mtl.runner.child_options import child_options
from mtl.runner.nested import run_nested
from mtl.meta.objectives import OBJECTIVES
from mtl.meta.partition import RECORD_KEY, candidate_partition, resolve_partition, save_partition
from mtl.jobs.trial_objective import TrialObjective

SCORES = ("mean_val_accuracy", "decathlon_score")


@OBJECTIVES.register("train")
@dataclass
class TrainObjective(TrialObjective):
    """A training run per candidate; score = its final mean validation accuracy (or decathlon score).

    The space's partition block's tasks must match the training's; TrialObjective holds the other fields.

    Args:
        config: the train config the trials start from (exp.dec, exp.mini_dec, ...).
        options: train option overrides for every trial (e.g. {"num_rounds": 2}).
        score: "mean_val_accuracy" or "decathlon_score".
    """

    config: str = "exp.dec"
    options: dict = field(default_factory=dict)
    score: str = "mean_val_accuracy"

    def __post_init__(self):
        if self.score not in SCORES:
            raise UserError(f"train objective: score must be one of {', '.join(SCORES)}, got {self.score!r}")
        self._train_opts({}, 0)  # refuse a bad config or bad options before the first candidate

    def __call__(self, params: dict, seed: int) -> dict:
        slug, run_id = self.trial_id(params, seed)
        opts = self._train_opts(self._overrides(params, seed, slug), seed)
        results = run_nested("train", opts, self.exp_root, run_id, note=f"trial {slug}")
        fractions = self._channel_use(opts, results["tasks"])
        return {"score": float(results[self.score]), "per_task": dict(results["val_accuracy"]),
                "resource": float(np.mean(list(fractions.values()))), "resource_per_task": fractions,
                "run": run_id}

    def _train_opts(self, overrides: dict, seed: int):
        """config < the search's data and device < the objective's options < the candidate's (its seed)."""
        layers = [{**self.inherited(), "seed": seed}, self.options, overrides]
        return child_options("train", self.config, layers, "train objective")

    def _overrides(self, params: dict, seed: int, slug: str) -> dict:
        from mtl.jobs import get_job

        fields = option_fields(get_job("train").options_cls)
        out: dict[str, Any] = {"seed": seed}
        for name, value in params.items():
            if name == RECORD_KEY:
                continue  # read with "partition" below
            if name == "partition" or name == "share_amt":
                out["model"] = "partitioned_resnet26"
                out["partition"] = (f"share_fixed:{float(value):.6g}" if name == "share_amt"
                                    else self._partition_file(params, seed, slug))
            elif name in fields:
                out[name] = value
            else:
                raise UserError(f"train objective: searched parameter {name!r} is not a train option")
        return out

    def _partition_file(self, params: dict, seed: int, slug: str) -> str:
        path = Path(self.exp_root) / self.run_id / "partitions" / f"{slug.replace('/', '_')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_partition(candidate_partition(params, seed, list(self.space.tasks) or None), path)
        return str(path)

    @staticmethod
    def _channel_use(opts, tasks: list[str]) -> dict[str, float]:
        """Per-task channel fraction of the partitioned layers (1.0 for an unpartitioned model)."""
        if not opts.model.startswith("partitioned"):
            return {t: 1.0 for t in tasks}
        partition = resolve_partition(opts.partition, tasks, seed=opts.partition_seed,
                                      families=task_families(opts.dataset, tasks))
        return {t: float(f) for t, f in zip(tasks, partition.channel_use())}
