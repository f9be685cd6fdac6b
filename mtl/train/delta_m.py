"""Δm: relative multi-task performance against single-task baselines of the same run set.

Convention (Maninis et al. 2019; Vandenhende et al. survey Eq. 10; LibMTL's Δp averaging):

    Δm = 100 / T  Σ_t  1/N_t  Σ_j  (-1)^{l_tj} (M_tj - B_tj) / B_tj

over T tasks with N_t metrics each; l_tj = 1 when lower is better. Positive = better than the
single-task networks. ``average='tasks'`` (default) averages metrics within a task first, then over
tasks; ``average='metrics'`` is the flat mean over all (task, metric) pairs of nash-mtl. Both agree
when each task has one metric. Baselines B are the single-task runs' results, averaged over their
seeds, each run selected on validation like the multi-task run (``select_on_validation``).
"""

from __future__ import annotations

from statistics import fmean
from typing import Any, Mapping, Sequence

Results = Mapping[str, float | Mapping[str, float]]


def _metrics(value: float | Mapping[str, float]) -> dict[str, float]:
    return dict(value) if isinstance(value, Mapping) else {"": float(value)}


def relative_changes(results: Results, baselines: Results,
                     lower_is_better: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Per task and metric, the signed relative change in percent (positive = better).

    Args:
        results: task -> value, or task -> {metric: value}.
        baselines: the same layout for the single-task baselines.
        lower_is_better: metric names (or task names, for single-metric tasks) where lower wins.
    """
    changes = {}
    for task, value in results.items():
        if task not in baselines:
            raise ValueError(f"no single-task baseline for task {task!r}")
        base = _metrics(baselines[task])
        changes[task] = {}
        for metric, m in _metrics(value).items():
            if metric not in base:
                raise ValueError(f"baseline of task {task!r} lacks metric {metric!r}")
            b = base[metric]
            if b == 0:
                raise ValueError(f"baseline {task}/{metric} is 0: relative change undefined")
            lower = (metric or task) in lower_is_better
            changes[task][metric] = 100.0 * (-1.0 if lower else 1.0) * (m - b) / abs(b)
    return changes


def delta_m(results: Results, baselines: Results, lower_is_better: Sequence[str] = (),
            average: str = "tasks") -> float:
    """Δm in percent (see the module docstring for the convention)."""
    if average not in ("tasks", "metrics"):
        raise ValueError(f"average must be 'tasks' or 'metrics', not {average!r}")
    changes = relative_changes(results, baselines, lower_is_better)
    if not changes:
        raise ValueError("delta_m needs at least one task")
    if average == "tasks":
        return fmean(fmean(c.values()) for c in changes.values())
    return fmean(v for c in changes.values() for v in c.values())


def mean_baselines(runs: Mapping[str, Sequence[float | Mapping[str, float]]]) -> dict[str, Any]:
    """Average single-task results over seeds: task -> list of results -> task -> mean result."""
    out = {}
    for task, values in runs.items():
        if not values:
            raise ValueError(f"no single-task run for task {task!r}")
        metrics = [_metrics(v) for v in values]
        mean = {m: fmean(v[m] for v in metrics) for m in metrics[0]}
        out[task] = mean[""] if list(mean) == [""] else mean
    return out


def select_on_validation(records: Sequence[Mapping[str, Any]], score: Any) -> Mapping[str, Any]:
    """The evaluation record with the best validation score (ties: the earliest).

    Args:
        records: evaluation records, each with a 'val' entry (and usually 'test').
        score: function of a record's 'val' results -> number, higher is better (e.g. validation Δm).

    Test results never take part in the choice (LibMTL #75 picks on test when no val set exists).
    """
    if not records:
        raise ValueError("no evaluation records to select from")
    if any("val" not in r for r in records):
        raise ValueError("model selection needs validation results in every record")
    best = max(range(len(records)), key=lambda i: (score(records[i]["val"]), -i))
    return records[best]
