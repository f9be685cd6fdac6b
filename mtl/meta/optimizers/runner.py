"""Runner: a fixed list of named variants x `trials`, all in one generation (baselines, seed studies).

Like the original's `runner` (reference/original-system.md §3.10): candidate ids are
`trial_<k>/<variant>`, and all variants of trial k share one seed (common random numbers).
Variants are params dicts, checked against the space; keys outside it pass to the objective as they
are (the train objective: train options). With `per_task` every variant runs once per task, as
`<task>_<variant>` with `task_choice` set to that task (the original's single_task_baselines list).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mtl.errors import UserError
from mtl.meta.optimizers.base import OPTIMIZERS, Candidate, MetaOptimizer
from mtl.util.rng import derive_seed
from mtl.meta.space import Space


@OPTIMIZERS.register("runner")
class Runner(MetaOptimizer):
    """Evaluates `variants` ({name: params}) `trials` times each; finished after one generation.

    Args:
        variants: {name: params} of the fixed candidates (a name may not contain "/").
        trials: evaluations of each variant; the variants of one trial share its seed.
        per_task: run every variant once per task, on that task alone (single-task baselines).
    """

    name = "runner"

    def __init__(self, space: Space, seed: int = 0, variants: Mapping[str, Mapping[str, Any]] | None = None,
                 trials: int = 1, per_task: bool = False, tasks: Sequence[str] = ()):
        super().__init__(space, seed)
        if not variants:
            raise UserError("runner needs at least one variant")
        self.per_task, self.tasks = bool(per_task), list(tasks)
        if self.per_task:
            variants = _per_task(variants, self.tasks)
        bad = [n for n in variants if not n or "/" in n]
        if bad:
            raise UserError(f"runner variant names must be non-empty and contain no '/': {bad}")
        self.variants = {name: dict(params) for name, params in variants.items()}
        self.vectors = {name: space.to_vector(params) for name, params in self.variants.items()}
        self.trials = int(trials)

    def options(self) -> dict:
        return {"variants": self.variants, "trials": self.trials}  # per_task variants already expanded

    @property
    def finished(self) -> bool:
        return self.generation > 0

    def ask(self) -> list[Candidate]:
        if self.finished:
            return []
        out = []
        for trial in range(self.trials):
            seed = derive_seed(self.seed, trial, bits=31)
            for name, params in self.variants.items():
                out.append(self._candidate(len(out), params, self.vectors[name], cid=f"trial_{trial}/{name}",
                                           seed=seed))
        return out


def _per_task(variants: Mapping[str, Mapping[str, Any]], tasks: Sequence[str]) -> dict[str, dict]:
    """Each variant once per task, named `<task>_<variant>`, with task_choice = that task."""
    if not tasks:
        raise UserError("runner per_task needs the tasks (--task_choice)")
    return {f"{task}_{name}": {**params, "task_choice": task} for task in tasks for name, params in variants.items()}
