"""Search outputs from a results store: best_partition.json, Pareto front, PNG plots, markdown report.

Plots use matplotlib's object API (`Figure` + Agg canvas): no pyplot global state, no display needed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtl.meta.partition import Partition
from mtl.meta.results_store import Evaluation, ResultsStore
from mtl.meta.structure import DEFAULT_CHANNELS, realised_fractions


def pareto_front(evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    """Ok evaluations not dominated in (score: higher is better, resource: lower is better), by resource."""
    points = sorted((e for e in evaluations if e.ok and e.resource is not None),
                    key=lambda e: (e.resource, -e.score))
    front, best = [], -math.inf
    for e in points:
        if e.score > best:
            front.append(e)
            best = e.score
    return front


def best_evaluation(evaluations: Sequence[Evaluation]) -> Evaluation | None:
    """The ok evaluation with the highest score (earliest on ties)."""
    ok = [e for e in evaluations if e.ok]
    return max(ok, key=lambda e: e.score) if ok else None


def partition_of(evaluation: Evaluation) -> tuple[str, list] | None:
    """(name, raw [2, N, N] matrices) of the first partition-shaped param, or None."""
    for name, value in evaluation.params.items():
        array = np.asarray(value, dtype=object)
        if array.ndim == 3 and array.shape[0] == 2 and array.shape[1] == array.shape[2]:
            return name, value
    return None


def write_best_partition(best: Evaluation, path: Path, tasks: Sequence[str] = ()) -> dict:
    """best_partition.json: the raw matrices ("partition", usable with --partition) plus all params and scores."""
    found = partition_of(best)
    record = {
        "partition": found[1] if found else None,
        "tasks": list(tasks),
        "params": best.params,
        "score": best.score,
        "per_task": best.per_task,
        "resource": best.resource,
        "resource_per_task": best.resource_per_task,
        "candidate_id": best.candidate_id,
        "seed": best.seed,
    }
    _write_json(path, record)
    return record


def write_report(store_path: str | Path, out_dir: str | Path, title: str = "Search report") -> dict[str, Path]:
    """Write best_partition.json, pareto_front.json, PNGs and report.md into `out_dir`; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with ResultsStore(store_path) as store:
        evaluations = store.evaluations()
        tasks = _tasks(store.get_meta("search"))
    paths: dict[str, Path] = {}
    best = best_evaluation(evaluations)
    front = pareto_front(evaluations)
    if best is not None:
        paths["best_partition"] = out / "best_partition.json"
        write_best_partition(best, paths["best_partition"], tasks)
    paths["pareto_front"] = out / "pareto_front.json"
    _write_json(paths["pareto_front"], [_brief(e) for e in front])
    paths["progress_png"] = plot_progress(evaluations, out / "progress.png")
    paths["pareto_png"] = plot_pareto(evaluations, front, out / "pareto_front.png")
    if best is not None and partition_of(best):
        paths["partition_png"] = plot_partition(partition_of(best)[1], tasks, out / "best_partition.png",
                                                seed=int(best.seed or 0))
    paths["report"] = out / "report.md"
    paths["report"].write_text(render_markdown(title, evaluations, best, front, paths))
    return paths


# -- plots ------------------------------------------------------------------------------------


def plot_progress(evaluations: Sequence[Evaluation], path: Path) -> Path:
    """Score (with running best) and resource against evaluation number (canonical order)."""
    fig = Figure(figsize=(8, 6))
    ax_score, ax_res = fig.subplots(2, 1, sharex=True)
    index = np.arange(len(evaluations))
    scores = np.array([e.score if e.ok else np.nan for e in evaluations], dtype=float)
    resources = np.array([e.resource if e.ok and e.resource is not None else np.nan for e in evaluations], dtype=float)
    ax_score.plot(index, scores, ".", markersize=3, alpha=0.5, label="evaluation")
    ax_score.plot(index, np.fmax.accumulate(np.nan_to_num(scores, nan=-np.inf)), label="best so far")
    ax_score.set_ylabel("score")
    ax_score.legend(loc="lower right")
    ax_res.plot(index, resources, ".", markersize=3, alpha=0.5)
    ax_res.set_ylabel("resource (mean channel fraction)")
    ax_res.set_xlabel("evaluation")
    return _save(fig, path)


def plot_pareto(evaluations: Sequence[Evaluation], front: Sequence[Evaluation], path: Path) -> Path:
    """Score against resource for all ok evaluations, the Pareto front highlighted."""
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ok = [e for e in evaluations if e.ok and e.resource is not None]
    ax.scatter([e.resource for e in ok], [e.score for e in ok], s=6, alpha=0.4, label="evaluations")
    ax.plot([e.resource for e in front], [e.score for e in front], "o-", color="C3", label="Pareto front")
    ax.set_xlabel("resource (mean channel fraction)")
    ax.set_ylabel("score")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_partition(matrices: list, tasks: Sequence[str], path: Path, seed: int = 0,
                   channels: int = DEFAULT_CHANNELS) -> Path:
    """best_partition.png: `partition_figure` saved."""
    return _save(partition_figure(matrices, tasks, seed, channels), path)


def partition_figure(matrices: list, tasks: Sequence[str], seed: int = 0, channels: int = DEFAULT_CHANNELS) -> Figure:
    """Heatmaps of what the partition realises: the fraction of a layer's channels each task uses and
    each pair shares (forward), and that each task updates and each pair both update (backward), read
    from the masks a model samples (`mtl.meta.structure`), not from the raw search parameters."""
    partition = Partition(np.asarray(matrices, dtype=float), seed=seed)
    mats = realised_fractions(partition, channels)
    n = partition.num_tasks
    labels = list(tasks) if len(tasks) == n else [str(i) for i in range(n)]
    fig = Figure(figsize=(4 + 1.2 * n, 2.4 + 0.6 * n))
    axes = fig.subplots(1, 2)
    titles = ("forward: channels used / shared", "backward: channels updated / both updated")
    for ax, mat, name in zip(axes, mats, titles):
        image = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.suptitle(f"fractions of the {channels} channels of a partitioned layer (realised masks, seed {seed})",
                 fontsize=8)
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    return fig


# -- markdown -----------------------------------------------------------------------------------


def render_markdown(title: str, evaluations: Sequence[Evaluation], best: Evaluation | None,
                    front: Sequence[Evaluation], paths: dict[str, Path]) -> str:
    failed = sum(not e.ok for e in evaluations)
    lines = [f"# {title}", "", f"Evaluations: {len(evaluations)} ({failed} failed).", ""]
    if best is not None:
        lines += [f"Best: `{best.candidate_id}` score {best.score:.4f}, resource {_fmt(best.resource)}.", ""]
        if best.per_task:
            lines += ["| task | score | resource |", "|---|---|---|"]
            lines += [f"| {t} | {v:.4f} | {_fmt(best.resource_per_task.get(t))} |" for t, v in best.per_task.items()]
            lines.append("")
    lines += ["## Pareto front (score vs resource)", "", "| candidate | score | resource |", "|---|---|---|"]
    lines += [f"| `{e.candidate_id}` | {e.score:.4f} | {_fmt(e.resource)} |" for e in front]
    lines.append("")
    for key, caption in (("progress_png", "Score and resource over evaluations"),
                         ("pareto_png", "Pareto front"), ("partition_png", "Best partition")):
        if key in paths:
            lines += [f"## {caption}", "", f"![{caption}]({paths[key].name})", ""]
    return "\n".join(lines)


# -- helpers ------------------------------------------------------------------------------------


def _tasks(described: dict | None) -> list[str]:
    for block in (described or {}).get("space", []):
        if block.get("kind") == "partition":
            return list(block["tasks"])
    return []


def _brief(e: Evaluation) -> dict:
    return {"candidate_id": e.candidate_id, "score": e.score, "resource": e.resource, "params": e.params}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
    tmp.replace(path)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
