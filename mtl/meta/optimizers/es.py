"""Antithetic evolution strategy (ARS-style, Mania et al. 2018) as used by the original partition search.

Generation 0 evaluates `init_random` random points and starts from the best. Every later generation
draws `num_deltas` clamped Gaussian perturbations d_k (sigma `delta_size`) of the centre p and
evaluates p + d_k and p - d_k. Scores are divided by their std; the `num_to_use` pairs with the
highest max(r+, r-) give the ascent estimate g = mean_k (r+_k - r-_k) d_k. The descent direction
-g + lambda * p (L2, forward diagonal only: pushes per-task channel use down) is stepped with
Nesterov SGD (PyTorch's formula: b = m b + grad; p -= lr (grad + m b)) and clamped to [0, 1].
Defaults are the original's `exps.es_dist` (reference/original-system.md §3.9).

The multi-objective variant normalizes each task's score separately, estimates g per task from
that task's top pairs, keeps each task's estimate only on the coordinates of its row/column of the
partition, and averages over the tasks touching each coordinate.

A pair with a failed member is left out of the estimate (no silent worst score).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from mtl.meta.optimizers.base import OPTIMIZERS, Candidate, MetaOptimizer, generation_rng
from mtl.meta.space import Space
from mtl.meta.results_store import Evaluation

_logger = logging.getLogger(__name__)


@dataclass
class ESOptions:
    """ES settings; defaults = the original's es_dist config."""

    init_random: int = field(default=32, metadata={"help": "random samples in generation 0; the best becomes the "
                                                            "first centre"})
    num_deltas: int = field(default=8, metadata={"help": "antithetic pairs per generation (2x evaluations)"})
    num_to_use: int = field(default=7, metadata={"help": "top pairs used in the update"})
    delta_size: float = field(default=0.04, metadata={"help": "sigma of the perturbations, in unit coordinates"})
    learning_rate: float = field(default=0.25, metadata={"help": "step size of the centre's update"})
    momentum: float = field(default=0.8, metadata={"help": "momentum of the centre's update"})
    nesterov: bool = field(default=True, metadata={"help": "Nesterov momentum"})
    weight_reg: str = field(default="l2", metadata={"help": "resource regularizer on the forward diagonal: none, "
                                                            "l1 or l2"})
    diag_weight_decay: float = field(default=0.001, metadata={"help": "the regularizer's lambda"})
    multiobjective: bool = field(default=False, metadata={"help": "per-task score normalization and "
                                                                  "estimates (on for es_multiobjective)"})

    def __post_init__(self):
        if self.weight_reg not in ("none", "l1", "l2"):
            raise ValueError(f"weight_reg must be none, l1 or l2, got {self.weight_reg!r}")
        if not 1 <= self.num_to_use <= self.num_deltas:
            raise ValueError(f"need 1 <= num_to_use <= num_deltas, got {self.num_to_use}, {self.num_deltas}")


@OPTIMIZERS.register("es")
class ES(MetaOptimizer):
    """Antithetic ES over a Space; see the module docstring."""

    name = "es"
    default_multiobjective = False
    Options = ESOptions

    def __init__(self, space: Space, seed: int = 0, **options):
        super().__init__(space, seed)
        options.setdefault("multiobjective", self.default_multiobjective)
        self.opts = ESOptions(**options)
        self.center: np.ndarray | None = None if self.opts.init_random else space.default()
        self.buffer = np.zeros(space.dim)

    def options(self) -> dict:
        return asdict(self.opts)

    # -- ask ----------------------------------------------------------------------------------

    def ask(self) -> list[Candidate]:
        if self.center is None:
            rng = generation_rng(self.seed, self.generation)
            return self._candidates([self.space.sample(rng) for _ in range(self.opts.init_random)])
        deltas = self._deltas()
        plus = [self.center + d for d in deltas]
        minus = [self.space.clip(self.center - d) for d in deltas]
        return self._candidates(plus + minus)

    def _deltas(self) -> np.ndarray:
        """[num_deltas, dim] perturbations, clamped so that centre + d stays in the unit cube."""
        rng = generation_rng(self.seed, self.generation)
        noise = rng.standard_normal((self.opts.num_deltas, self.space.dim)) * self.opts.delta_size
        return self.space.clip(self.center + noise) - self.center

    # -- tell ---------------------------------------------------------------------------------

    def _update(self, evaluations: list[Evaluation]) -> None:
        if self.center is None:
            self._start(evaluations)
            return
        deltas = self._deltas()
        if self.opts.multiobjective:
            ascent = self._multiobjective_estimate(evaluations, deltas)
        else:
            ascent = self._estimate(_scores(evaluations, self.opts.num_deltas), deltas)
        self._step(-ascent + self._regularizer())

    def _start(self, evaluations: list[Evaluation]) -> None:
        """After the random generation: the centre is the best sample (the default if all failed)."""
        vectors = [np.array(c.vector) for c in self.ask()]
        ok = [i for i, e in enumerate(evaluations) if e.ok]
        best = max(ok, key=lambda i: evaluations[i].score, default=None)  # earliest on ties
        self.center = self.space.default() if best is None else vectors[best]
        if not ok:
            _logger.warning("every initial sample failed; ES starts from the space's default point")

    def _estimate(self, scores: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """ARS ascent estimate from [num_deltas, 2] scores (NaN = failed) and the deltas."""
        valid = ~np.isnan(scores).any(axis=1)
        if not valid.any():
            _logger.warning("generation %d: no complete antithetic pair; no gradient estimate", self.generation)
            return np.zeros(self.space.dim)
        rewards = scores[valid] / (scores[valid].std() + 1e-4)
        top = np.argsort(-rewards.max(axis=1), kind="stable")[: self.opts.num_to_use]
        diff = rewards[top, 0] - rewards[top, 1]
        return diff @ deltas[valid][top] / diff.size

    def _multiobjective_estimate(self, evaluations: list[Evaluation], deltas: np.ndarray) -> np.ndarray:
        """Per-task estimates, each kept on its task's coordinates, averaged where tasks overlap."""
        masks = self.space.task_masks()
        if not len(masks):
            raise ValueError("multi-objective ES needs a partition block (tasks) in the space")
        per_task = [self._estimate(_scores(evaluations, self.opts.num_deltas, task), deltas) * mask
                    for task, mask in zip(self.space.tasks, masks)]
        return np.sum(per_task, axis=0) / np.maximum(masks.sum(axis=0), 1)

    def _regularizer(self) -> np.ndarray:
        lam = self.opts.diag_weight_decay * self.space.penalty_mask()
        if self.opts.weight_reg == "l2":
            return lam * self.center
        if self.opts.weight_reg == "l1":
            return lam * np.sign(self.center)
        return np.zeros_like(self.center)

    def _step(self, grad: np.ndarray) -> None:
        """SGD with (Nesterov) momentum on the descent direction `grad`, then clamp."""
        m = self.opts.momentum
        self.buffer = m * self.buffer + grad
        step = grad + m * self.buffer if self.opts.nesterov else self.buffer
        self.center = self.space.clip(self.center - self.opts.learning_rate * step)

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        center = None if self.center is None else self.center.tolist()
        return {**super().state_dict(), "center": center, "buffer": self.buffer.tolist()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.center = None if state["center"] is None else np.array(state["center"], dtype=float)
        self.buffer = np.array(state["buffer"], dtype=float)


@OPTIMIZERS.register("es_multiobjective")
class MultiObjectiveES(ES):
    """ES with per-task score normalization and per-task estimates (the original's multiobjective=1)."""

    name = "es_multiobjective"
    default_multiobjective = True


def _scores(evaluations: list[Evaluation], num_deltas: int, task: str | None = None) -> np.ndarray:
    """[num_deltas, 2] (plus, minus) overall or per-task scores; NaN where an evaluation failed."""
    def value(e: Evaluation) -> float:
        if not e.ok:
            return np.nan
        if task is None:
            return e.score
        if task not in e.per_task:
            raise ValueError(f"multi-objective ES: evaluation {e.candidate_id} has no per-task score for {task!r}")
        return e.per_task[task]

    values = np.array([value(e) for e in evaluations], dtype=float)
    return np.stack([values[:num_deltas], values[num_deltas:]], axis=1)
