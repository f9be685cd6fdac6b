"""The pipeline's result table: one row per trained variant, as JSON and as markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtl.data.domains import get_dataset
from mtl.meta.partition import load_partition
from mtl.train.metrics import decathlon_score

LABELS = {"es_best": "ES best (searched)", "random_best": "random search best", "share_all": "share_all",
          "independent": "independent"}


def build_table(opts, tasks: list[str], teachers: dict[str, dict], retrains: dict[str, dict],
                partitions: dict[str, Path], proxy: dict[str, dict], settings: dict[str, Any]) -> dict:
    """Rows: the single-task teachers, then every retrained partition.

    Columns: per-task validation accuracy, their mean, the decathlon-style score (sum over tasks, 1000
    per perfect task, 250 at the dataset's reference accuracy), channels (mean fraction of the
    partitioned layers' channels a task uses), params/task (mean parameters a task's forward pass
    uses) and the proxy score (all partitions scored together by the search's objective).
    """
    spec = get_dataset(opts.dataset)
    rows = []
    accuracy = {t: teachers[t]["val_accuracy"][t] for t in tasks}
    rows.append(_row("single-task (teachers)", accuracy, decathlon_score(accuracy, spec),
                     [1.0] * len(tasks), [teachers[t]["resources"][t]["params"] for t in tasks], None))
    order = sorted(retrains, key=lambda n: (n in ("random_best", "es_best"), n == "es_best"))
    for name in order:
        results = retrains[name]
        channels = load_partition(partitions[name], tasks).channel_use().tolist()
        params = [results["resources"][t]["params"] for t in tasks]
        rows.append(_row(LABELS.get(name, name.replace("share_fixed_", "share_fixed s=")), results["val_accuracy"],
                         results["decathlon_score"], channels, params, proxy.get(name, {}).get("score"),
                         variant=name))
    return {"tasks": tasks, "rows": rows, "settings": settings}


def _row(label: str, accuracy: dict, score: float, channels: list, params: list, proxy: float | None,
         variant: str = "teachers") -> dict:
    return {"variant": variant, "label": label, "accuracy": {t: float(a) for t, a in accuracy.items()},
            "mean_accuracy": float(np.mean(list(accuracy.values()))), "decathlon_score": float(score),
            "channels": float(np.mean(channels)), "params_per_task": float(np.mean(params)),
            "proxy_score": None if proxy is None else float(proxy)}


def _backbone_words(settings: dict) -> str:
    if "backbone" not in settings:  # tables from before the backbone stage
        return ""
    from mtl.jobs.pipeline_backbone import describe_backbone

    return describe_backbone(settings["backbone"]) + "; "


def render_table(table: dict) -> str:
    """The table as markdown, with a caption stating the (reduced) settings."""
    s = table["settings"]
    tasks = table["tasks"]
    lines = [f"Pipeline results on {s['dataset']} ({', '.join(tasks)}): ResNet-26 width {s['width']:g}, "
             f"{s['input_res']} px inputs, device {s['device']}; {_backbone_words(s)}teachers {s['teacher_steps']} steps each, "
             f"retrains {s['retrain_steps']} steps, partitioned layers: {s['partition_layers']}; "
             f"search: {s['objective']} objective, {s['budget']} evaluations (ES and random search). Validation accuracy in %.", ""]
    header = ["variant", *tasks, "mean", "score", "channels", "params/task", "proxy"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in table["rows"]:
        cells = [row["label"], *(f"{100 * row['accuracy'][t]:.1f}" for t in tasks), f"{100 * row['mean_accuracy']:.1f}",
                 f"{row['decathlon_score']:.0f}", f"{row['channels']:.2f}", f"{row['params_per_task'] / 1e3:.0f}k",
                 "-" if row["proxy_score"] is None else f"{row['proxy_score']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "score: decathlon-style (1000 per perfect task, 250 at the dataset's reference accuracy); "
              "channels: mean fraction of the partitioned layers' channels a task uses; params/task: mean "
              "parameters one task's forward pass uses; proxy: every partition scored by the objective with one seed."]
    return "\n".join(lines)
