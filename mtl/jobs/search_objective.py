"""The `search` objective: score a candidate by a whole search run (a nested search per candidate).

The original's es_hyperparams (reference/original-system.md §3.9): a random search over ES settings in
which every candidate is an es_dist run. A candidate's params become the child search's options: a
search option by that name (budget, restrict_amt, ...) is set directly, any other name is an entry of
the child's optimizer_options (learning_rate, momentum, delta_size, num_deltas, num_to_use). The
score is, as in the original, the child's last generation's mean score (its ES `score`); the child's
best evaluation gives the resource and per-task figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtl.config.options import build_options, option_fields
from mtl.runner.child_options import child_values
from mtl.runner.nested import run_nested
from mtl.jobs.trial_objective import TrialObjective
from mtl.meta.objectives import OBJECTIVES
from mtl.meta.results_store import ResultsStore


@OBJECTIVES.register("search")
@dataclass
class SearchObjective(TrialObjective):
    """A search run per candidate; score = mean score of its last generation.

    The space holds hyperparameters of the child search; TrialObjective holds the other fields.

    Args:
        config: the search config the children start from (exp.es_dist).
        options: search option overrides for every child (e.g. {"budget": 5000}); a dict option
            given here (optimizer_options, objective_options) updates the config's.
    """

    config: str = "exp.es_dist"
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        self._search_opts({}, 0)  # refuse a bad config or bad options before the first candidate

    def __call__(self, params: dict, seed: int) -> dict:
        slug, exp_id = self.trial_id(params, seed)
        opts = self._search_opts(params, seed)
        results = run_nested("search", opts, self.exp_root, exp_id, note=f"trial {slug}")
        best = results.get("best") or {}
        with ResultsStore(Path(self.exp_root) / exp_id / results["store"]) as store:
            rows = store.evaluations("ok")
        last = max(e.generation for e in rows)
        best_row = next((e for e in rows if e.candidate_id == best.get("candidate_id")), None)
        return {"score": float(np.mean([e.score for e in rows if e.generation == last])),
                "per_task": dict(best_row.per_task) if best_row else {},
                "resource": best.get("resource"), "best_score": best.get("score"), "run": exp_id}

    def _search_opts(self, params: dict, seed: int):
        from mtl.jobs import get_job

        cls = get_job("search").options_cls
        values = child_values("search", self.config, [self.inherited(), self.options, {"seed": seed}],
                              "search objective")
        fields = option_fields(cls)
        settings = dict(values.get("optimizer_options", {}))
        for name, value in params.items():
            if name in fields:
                values[name] = value
            else:
                settings[name] = value
        if "num_to_use" in settings and "num_deltas" in settings:
            # The original sliced the top pairs (argsort[:num_to_use]), so more than num_deltas meant all.
            settings["num_to_use"] = min(int(settings["num_to_use"]), int(settings["num_deltas"]))
        values["optimizer_options"] = settings
        return build_options(cls, values, f"search objective ({self.config})")

