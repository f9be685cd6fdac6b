"""Objectives: picklable callables `evaluate(params, seed) -> {"score", "per_task", "resource", ...}`.

Here only the test objectives live (no training): `DebugObjective` (a known optimum, optional seeded
noise — the original's worker_mode=debug, reference/original-system.md §3.4) and `FlakyObjective`,
a fault injector for testing retries (killing the search itself: MTL_FAULT=KILL@search_record=K).
Objectives that train register themselves from their own modules, imported on first use by
`get_objective`: "proxy" (mtl/distill/objective.py, the distillation proxy), "train" (mtl/jobs/train_objective.py,
a full training run per candidate) and "search" (mtl/jobs/search_objective.py, a search run per
candidate). A class may also be an objective with `evaluate_batch(params_list,
seeds)`: the in-process and local pools then hand it whole populations.

Result keys: `score` (float, higher is better), `per_task` ({task: float}), `resource` (float, mean
per-task channel fraction) and optionally `resource_per_task` ({task: float}).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mtl.meta.space import Space
from mtl.registry import Registry

# Objectives registered by modules outside mtl.meta, imported on first use (like mtl.jobs.JOBS).
OBJECTIVES = Registry("objective", modules={
    "proxy": "mtl.distill.objective",
    "train": "mtl.jobs.train_objective",
    "search": "mtl.jobs.search_objective",
})

Objective = Callable[[dict, int], dict]


def objective_names() -> list[str]:
    """Every objective name: registered ones and those whose module is imported on first use."""
    return OBJECTIVES.available()


def get_objective(name: str) -> Any:
    """The objective class / factory registered as `name`, importing its module when needed.

    Raises:
        KeyError: unknown name (the message lists the choices).
        ImportError: the objective's module is not available (e.g. not installed yet).
    """
    return OBJECTIVES.get(name)


@OBJECTIVES.register("debug")
@dataclass
class DebugObjective:
    """score = -||u - target|| in unit coordinates (+ noise * N(0,1) seeded by `seed`); optimum 0.

    `target` is drawn uniformly from [0.1, 0.9]^dim with `target_seed`. Per task, the same distance
    over that task's coordinates. Resource = the partition's forward diagonal (channel fractions).

    Args:
        target_seed: seed of the hidden optimum.
        noise: standard deviation of the noise added to each score.
    """

    space: Space
    target_seed: int = 0
    noise: float = 0.0
    target: np.ndarray = field(init=False)

    def __post_init__(self):
        self.target = np.random.default_rng(self.target_seed).uniform(0.1, 0.9, self.space.dim)

    @property
    def optimum(self) -> dict[str, Any]:
        """The params of the known optimum (score 0 without noise)."""
        return self.space.to_params(self.target)

    def __call__(self, params: dict, seed: int) -> dict:
        error = self.space.to_vector(params) - self.target
        rng = np.random.default_rng(seed)
        score = -float(np.linalg.norm(error)) + self.noise * float(rng.standard_normal())
        per_task = {t: -float(np.linalg.norm(error * mask)) + self.noise * float(rng.standard_normal())
                    for t, mask in zip(self.space.tasks, self.space.task_masks())}
        resource_per_task = self.space.resource_per_task(params)
        resource = float(np.mean(list(resource_per_task.values()))) if resource_per_task else 0.0
        return {"score": score, "per_task": per_task, "resource": resource, "resource_per_task": resource_per_task}


@dataclass
class FlakyObjective:
    """Fault injector: the first `failures` attempts for each seed raise (or hard-exit the process).

    Attempts are counted with marker files in `counter_dir`, so the count survives worker processes.
    `seeds`: only candidates with these seeds are affected (None = all).
    """

    inner: Objective
    counter_dir: str
    failures: int = 1
    crash: bool = False  # True: os._exit(3) instead of raising (a crashed worker)
    seeds: tuple[int, ...] | None = None

    def __call__(self, params: dict, seed: int) -> dict:
        if self.seeds is None or seed in self.seeds:
            directory = Path(self.counter_dir)
            directory.mkdir(parents=True, exist_ok=True)
            attempt = len(list(directory.glob(f"{seed}-*"))) + 1
            (directory / f"{seed}-{attempt}").touch()
            if attempt <= self.failures:
                if self.crash:
                    os._exit(3)
                raise RuntimeError(f"injected failure {attempt}/{self.failures} for seed {seed}")
        return self.inner(params, seed)
