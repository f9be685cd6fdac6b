"""What the objectives that score a candidate by a whole child run ("train", "search") share: where the
trials live, the tasks and data they inherit from the search, and a trial's run name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from mtl.meta.pool import current_device
from mtl.meta.space import Space


@dataclass
class TrialObjective:
    """A child run per candidate, under exp_root/run_id/trials/<slug>.

    Args:
        space: the search space.
        exp_root / run_id: where the search runs.
        dataset / task_choice / data_dir: the trials' tasks and data (from the search's options).
    """

    space: Space
    exp_root: str
    run_id: str
    dataset: str = "decathlon"
    task_choice: str = "1-2-3-4-5-6-7-8-9"
    data_dir: str = "data"

    def inherited(self) -> dict:
        """The options a trial takes from the search: tasks, data and the worker's device."""
        return {"dataset": self.dataset, "task_choice": self.task_choice, "data_dir": self.data_dir,
                "device": current_device()}

    def trial_id(self, params: dict, seed: int) -> tuple[str, str]:
        """(slug, run name) of the candidate's trial."""
        slug = trial_slug(params, seed)
        return slug, f"{self.run_id}/trials/{slug}"


def trial_slug(params: dict, seed: int) -> str:
    """A stable, readable run name for a candidate: its scalar params, plus a hash of everything."""
    digest = hashlib.sha1(json.dumps([params, seed], sort_keys=True).encode()).hexdigest()[:10]
    scalars = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return "_".join([*scalars, digest])
