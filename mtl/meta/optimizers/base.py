"""Meta-optimizer interface (ask / tell / state_dict), the Candidate type and the optimizer registry.

Contract that makes a search resumable exactly: `ask()` is a pure function of (seed, generation,
state) — calling it twice, or after a restart from `state_dict()`, yields the same candidates with
the same ids — and `tell()` takes the generation's evaluations in `ask()` order, then advances the
generation. State is JSON (lists and numbers), never a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mtl.meta.space import Space
from mtl.meta.results_store import Evaluation
from mtl.registry import Registry
from mtl.util.rng import derive_seed

# The module that registers each meta-optimizer (imported on first use).
OPTIMIZERS = Registry("meta-optimizer", modules={
    "es": "mtl.meta.optimizers.es", "es_multiobjective": "mtl.meta.optimizers.es", "grid": "mtl.meta.optimizers.grid",
    "nevergrad": "mtl.meta.optimizers.nevergrad", "random": "mtl.meta.optimizers.random_search",
    "runner": "mtl.meta.optimizers.runner"})


@dataclass(frozen=True)
class Candidate:
    """One point to evaluate. `id` is unique within a search and never reused (e.g. gen0003/cand007)."""

    id: str
    generation: int
    position: int
    params: dict[str, Any]
    seed: int
    vector: tuple[float, ...] | None = None


def generation_rng(seed: int, generation: int) -> np.random.Generator:
    """The random stream of one generation: the same for the same (seed, generation), however resumed."""
    return np.random.default_rng([int(seed), int(generation)])


def candidate_id(generation: int, position: int) -> str:
    return f"gen{generation:04d}/cand{position:03d}"


class MetaOptimizer:
    """Base class: generation counter, best-so-far tracking, candidate construction, state.

    Subclasses implement `ask()` and `_update(evaluations)`; extend `state_dict`/`load_state_dict`
    and `options()` when they hold more state or options.
    """

    name = "base"

    def __init__(self, space: Space, seed: int = 0):
        self.space = space
        self.seed = int(seed)
        self.generation = 0
        self.best: dict | None = None  # {"candidate_id", "score", "params"} of the best ok evaluation

    # -- interface ----------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True when the optimizer has nothing more to propose (grid exhausted, runner done)."""
        return False

    def ask(self) -> list[Candidate]:
        raise NotImplementedError

    def tell(self, evaluations: Sequence[Evaluation]) -> None:
        """Take the evaluations of `ask()`'s candidates, in that order; advance the generation."""
        asked = [c.id for c in self.ask()]
        told = [e.candidate_id for e in evaluations]
        if asked != told:
            raise ValueError(f"tell() needs generation {self.generation}'s evaluations in ask() order")
        self._track_best(evaluations)
        self._update(list(evaluations))
        self.generation += 1

    def _update(self, evaluations: list[Evaluation]) -> None:
        """Subclass hook: change internal state from one generation's evaluations."""

    def options(self) -> dict:
        """Settings that must not change across a resume (stored with the search and checked)."""
        return {}

    def describe(self) -> dict:
        return {"optimizer": self.name, "seed": self.seed, "options": self.options(), "space": self.space.spec()}

    def state_dict(self) -> dict:
        return {"generation": self.generation, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.generation = int(state["generation"])
        self.best = state["best"]

    # -- helpers ------------------------------------------------------------------------------

    def _candidates(self, vectors: Sequence[np.ndarray]) -> list[Candidate]:
        """Candidates of the current generation from unit vectors."""
        return [self._candidate(i, self.space.to_params(v), v) for i, v in enumerate(vectors)]

    def _candidate(self, position: int, params: dict, vector: np.ndarray | None = None, cid: str | None = None,
                   seed: int | None = None) -> Candidate:
        g = self.generation
        return Candidate(
            id=cid or candidate_id(g, position), generation=g, position=position, params=params,
            seed=derive_seed(self.seed, g, position, bits=31) if seed is None else seed,
            vector=None if vector is None else tuple(float(x) for x in vector))

    def _track_best(self, evaluations: Sequence[Evaluation]) -> None:
        for e in evaluations:
            if e.ok and (self.best is None or e.score > self.best["score"]):
                self.best = {"candidate_id": e.candidate_id, "score": e.score, "params": e.params}


def create_optimizer(name: str, space: Space, seed: int = 0, **options) -> MetaOptimizer:
    """Build a registered meta-optimizer by name ("es", "es_multiobjective", "random", "grid", "runner")."""
    return OPTIMIZERS.get(name)(space, seed=seed, **options)
