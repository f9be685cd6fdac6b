"""Nevergrad's derivative-free optimizers (CMA-ES, differential evolution, NGOpt, (1+1), ...) over a Space.

Nevergrad (1.0.x, the `nevergrad` extra) works on the same unit cube as ES: one bounded array of
`space.dim` coordinates in [0, 1], mapped to params by the space, so partitions, hyperparameter
ranges or both are searched alike. Generation-synchronous batched ask/tell: each generation asks
`population` candidates at once (Nevergrad's `num_workers`; CMA's popsize is at least that), and tells all of
them, in ask order, once the generation is recorded. Nevergrad minimizes: it is told -score.

A failed evaluation is told as the worst score seen so far (the lowest ok score of this and earlier
generations), so it never looks better than a real result; before any evaluation has succeeded it
is told FAILED_SCORE. Seeded: the parametrization's random state is the search seed.

Resume without pickles (`replays_history`): Nevergrad's internal state is not JSON, so on
`--continue` the search loop rebuilds the optimizer from its options and tells it the stored
evaluations again, generation by generation in their order; being deterministic, it then proposes
exactly the candidates an uninterrupted run would (the loop checks every replayed candidate against
its stored row). `budget` is what Nevergrad plans for (NGOpt picks its algorithms from it), fixed
when the search starts so that a budget grown on `--continue` does not change the candidates.
"""

from __future__ import annotations

import difflib
import math
from typing import Sequence

import numpy as np

from mtl.errors import UserError
from mtl.meta.optimizers.base import OPTIMIZERS, Candidate, MetaOptimizer
from mtl.meta.space import Space
from mtl.meta.results_store import Evaluation

FAILED_SCORE = -1e6  # told for a failed evaluation before any score exists (worse than any real one)
COMMON = ("CMA", "DiagonalCMA", "TwoPointsDE", "NGOpt", "OnePlusOne", "PSO", "TBPSA", "RandomSearch")


def import_nevergrad():
    """The nevergrad package, or a UserError saying how to install it."""
    try:
        import nevergrad
    except ImportError:
        raise UserError("--optimizer nevergrad needs the nevergrad package: pip install -e '.[nevergrad]'.") from None
    return nevergrad


@OPTIMIZERS.register("nevergrad")
class NevergradOptimizer(MetaOptimizer):
    """A Nevergrad optimizer by registry name; see the module docstring.

    Args:
        space / seed: as every meta-optimizer.
        optimizer: a name of `nevergrad.optimizers.registry` (CMA, TwoPointsDE, NGOpt, OnePlusOne, ...).
        population: candidates per generation (>= 1).
        budget: evaluations Nevergrad plans for (>= 1).
    """

    name = "nevergrad"
    options_via_fields = True  # its settings are the search's --nevergrad_* options, not --optimizer.*
    replays_history = True  # resumed by re-telling the stored evaluations (mtl/meta/search_loop.py)

    def __init__(self, space: Space, seed: int = 0, optimizer: str = "NGOpt", population: int = 16,
                 budget: int = 10000):
        super().__init__(space, seed)
        ng = import_nevergrad()
        if optimizer not in ng.optimizers.registry:
            close = difflib.get_close_matches(optimizer, list(ng.optimizers.registry), n=3)
            raise ValueError(f"unknown Nevergrad optimizer {optimizer!r}" + (f" (did you mean {', '.join(close)}?)"
                             if close else f" (e.g. {', '.join(COMMON)})"))
        if int(population) < 1 or int(budget) < 1:
            raise ValueError(f"population and budget must be >= 1 (got {population}, {budget})")
        self.optimizer_name, self.population, self.budget = optimizer, int(population), int(budget)
        self._ng = self._build(ng)
        self._asked: list[tuple[Candidate, object]] | None = None  # this generation's (candidate, ng parameter)
        self._worst: float | None = None  # lowest ok score told so far

    def options(self) -> dict:
        return {"optimizer": self.optimizer_name, "population": self.population, "budget": self.budget}

    def _build(self, ng):
        parametrization = ng.p.Array(shape=(self.space.dim,), lower=0.0, upper=1.0)
        parametrization.random_state = np.random.RandomState(self.seed)
        cls = ng.optimizers.registry[self.optimizer_name]
        return cls(parametrization=parametrization, budget=self.budget, num_workers=self.population)

    # -- ask / tell -----------------------------------------------------------------------------

    def ask(self) -> list[Candidate]:
        """The generation's candidates; asked from Nevergrad once per generation (then repeated)."""
        if self._asked is None:
            asked = [self._ng.ask() for _ in range(self.population)]
            vectors = [self.space.clip(p.value) for p in asked]
            self._asked = list(zip(self._candidates(vectors), asked))
        return [candidate for candidate, _ in self._asked]

    def _update(self, evaluations: list[Evaluation]) -> None:
        scores = [e.score for e in evaluations if e.ok]
        if scores:
            self._worst = min(scores) if self._worst is None else min(self._worst, *scores)
        failed = FAILED_SCORE if self._worst is None else self._worst
        for (_, parameter), evaluation in zip(self._asked, evaluations):
            self._ng.tell(parameter, -(evaluation.score if evaluation.ok else failed))
        self._asked = None

    # -- state: only counters; Nevergrad's own state is rebuilt by replaying the store --------------

    def load_state_dict(self, state: dict) -> None:
        raise RuntimeError("a Nevergrad optimizer is restored by replaying its evaluations (replay()), "
                           "not from a state dict")

    def replay(self, generations: Sequence[Sequence[Evaluation]]) -> None:
        """Tell the recorded generations again, in order, checking each asked candidate against its row."""
        for evaluations in generations:
            candidates = self.ask()
            if [c.id for c in candidates] != [e.candidate_id for e in evaluations]:
                raise UserError(f"cannot continue: generation {self.generation} of the results store does not "
                                f"hold the {len(candidates)} candidates Nevergrad proposes")
            changed = [c.id for c, e in zip(candidates, evaluations) if not _same_params(c.params, e.params)]
            if changed:
                raise UserError(f"cannot continue exactly: Nevergrad now proposes other candidates than the stored "
                                f"{changed[0]} (another nevergrad version?); start a new run")
            self.tell(evaluations)


def _same_params(a: dict, b: dict) -> bool:
    """Params equal up to JSON round-off (the store keeps them as JSON)."""
    fa, fb = _flatten(a), _flatten(b)
    return len(fa) == len(fb) and all(math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15) for x, y in zip(fa, fb))


def _flatten(value) -> list[float]:
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _flatten(value[k])]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flatten(v)]
    return [float(value)]
