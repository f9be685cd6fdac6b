"""The pipeline's result table: per-seed results of every trained variant, their mean ± std, the share_fixed
curve at each variant's resource, and the sharing structure the searched partitions recovered.

`build_table` stores the per-seed results (table.json "rows" -> "seeds"); `summarize_table` recomputes
every derived number from them (mean ± std, the interpolated share_fixed curve, the structure), so a
saved table can be checked or re-rendered without the runs.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mtl.data.domains import get_dataset

LABELS = {"es_best": "ES best (searched)", "random_best": "random search best", "share_all": "share_all",
          "independent": "independent", "families": "oracle (families)"}
SEARCHED = ("es_best", "random_best")


def variant_row(variant: str, seeds: Sequence[dict], channels: float, params: float, proxy: float | None,
                tasks: Sequence[str], dataset: str) -> dict:
    """One variant's raw row: its per-seed validation accuracies and decathlon scores."""
    return {"variant": variant, "label": LABELS.get(variant, variant.replace("share_fixed_", "share_fixed s=")),
            "channels": float(channels), "params_per_task": float(params),
            "proxy_score": None if proxy is None else float(proxy),
            "seeds": [{"seed": int(s["seed"]), "accuracy": {t: float(s["accuracy"][t]) for t in tasks},
                       "decathlon_score": float(s["decathlon_score"])} for s in seeds]}


def build_table(tasks: list[str], rows: list[dict], settings: dict[str, Any],
                structure: dict[str, dict] | None = None) -> dict:
    """The table: the raw rows (teachers first, the searched variants last) and their summary."""
    order = sorted(rows, key=lambda r: (r["variant"] != "teachers", r["variant"] in SEARCHED,
                                        r["variant"] == "es_best"))
    table = {"tasks": list(tasks), "settings": settings, "rows": order, "structure": structure or {}}
    table["summary"] = summarize_table(table)
    return table


def summarize_table(table: dict) -> dict:
    """Per variant: mean ± std (over seeds) of each task's accuracy, of their mean and of the score; the
    share_fixed curve (share_fixed amounts with independent = s 0 and share_all = s 1) interpolated at the
    variant's resource, and the variant's margin over it."""
    tasks = table["tasks"]
    curve = share_fixed_curve(table["rows"], tasks)
    out = {"curve": [list(p) for p in curve], "variants": {}}
    for row in table["rows"]:
        means = [mean_accuracy(s, tasks) for s in row["seeds"]]
        entry = {"n_seeds": len(row["seeds"]), "mean": _stat(means),
                 "score": _stat([s["decathlon_score"] for s in row["seeds"]]),
                 "per_task": {t: _stat([s["accuracy"][t] for s in row["seeds"]]) for t in tasks}}
        at = None if row["variant"] == "teachers" else interpolate(curve, row["channels"])
        entry["share_fixed_at_resource"] = at
        entry["margin"] = None if at is None else entry["mean"]["mean"] - at
        out["variants"][row["variant"]] = entry
    return out


def mean_accuracy(seed_result: dict, tasks: Sequence[str]) -> float:
    return float(np.mean([seed_result["accuracy"][t] for t in tasks]))


def share_fixed_curve(rows: Sequence[dict], tasks: Sequence[str]) -> list[tuple[float, float]]:
    """(resource, seed-mean accuracy) of the fixed-sharing family, sorted by resource."""
    fixed = [r for r in rows if r["variant"].startswith("share_fixed_") or r["variant"] in ("share_all", "independent")]
    points = {round(r["channels"], 6): float(np.mean([mean_accuracy(s, tasks) for s in r["seeds"]]))
              for r in fixed if r["seeds"]}
    return sorted(points.items())


def interpolate(curve: Sequence[tuple[float, float]], resource: float) -> float | None:
    """The curve's accuracy at `resource` (linear between its points), None outside its range."""
    if len(curve) < 2:
        return None
    xs, ys = zip(*curve)
    if not xs[0] - 1e-9 <= resource <= xs[-1] + 1e-9:
        return None
    return float(np.interp(resource, xs, ys))


def _stat(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "values": values}


# -- markdown --------------------------------------------------------------------------------------


def _backbone_words(settings: dict) -> str:
    if "backbone" not in settings:  # tables from before the backbone stage
        return ""
    from mtl.jobs.pipeline_backbone import describe_backbone

    return describe_backbone(settings["backbone"]) + "; "


def render_table(table: dict) -> str:
    """The table as markdown: a caption stating the (reduced) settings, one row per variant with
    mean ± std over its seeds, the share_fixed curve at its resource, and the structure section."""
    s, tasks, summary = table["settings"], table["tasks"], table["summary"]
    lines = [_caption(s, tasks), ""]
    header = ["variant", *tasks, "mean", "share_fixed @ resource", "Δ vs curve", "score", "channels",
              "params/task", "proxy"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in table["rows"]:
        entry = summary["variants"][row["variant"]]
        at, margin = entry["share_fixed_at_resource"], entry["margin"]
        cells = [row["label"], *(_pm(entry["per_task"][t], 100) for t in tasks), _pm(entry["mean"], 100),
                 "-" if at is None else f"{100 * at:.1f}", "-" if margin is None else f"{100 * margin:+.1f}",
                 _pm(entry["score"], 1, 0), f"{row['channels']:.2f}", f"{row['params_per_task'] / 1e3:.0f}k",
                 "-" if row["proxy_score"] is None else f"{row['proxy_score']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Cells: mean ± std over the retrain seeds (teachers: one run each), validation accuracy in %. "
              "share_fixed @ resource: the fixed-sharing curve (independent = s 0, share_fixed amounts, share_all "
              "= s 1) interpolated at the variant's mean channel fraction; Δ: the variant's mean minus it. score: "
              "decathlon-style (1000 per perfect task, 250 at the dataset's reference accuracy); channels: mean "
              "fraction of the partitioned layers' channels a task uses; proxy: every partition scored by the "
              "objective with one seed."]
    lines += render_structure(table.get("structure") or {})
    return "\n".join(lines)


def _caption(s: dict, tasks: Sequence[str]) -> str:
    return (f"Pipeline results on {s['dataset']} ({', '.join(tasks)}), seed {s.get('seed', 0)}: ResNet-26 width "
            f"{s['width']:g}, {s['input_res']} px inputs, device {s['device']}; {_backbone_words(s)}teachers "
            f"{s['teacher_steps']} steps each, retrains {s['retrain_steps']} steps x {s.get('retrain_seeds', 1)} "
            f"seeds, partitioned layers: {s['partition_layers']}; search: {s['objective']} objective, "
            f"{s['budget']} evaluations (ES and random search).")


def render_structure(structure: dict) -> list[str]:
    """"Structure recovered": realised forward overlap within vs across families per partition."""
    if not structure:
        return []
    lines = ["", "Structure recovered (realised masks of a partitioned layer; overlap = fraction of its channels "
             "two tasks both use, mean over task pairs):", "",
             "| partition | within-family overlap | cross-family overlap | within > cross |", "|---|---:|---:|---|"]
    for variant, entry in structure.items():
        within, cross = entry["within"], entry["cross"]
        verdict = "-" if within is None or cross is None else ("yes" if within > cross else "no")
        lines.append(f"| {LABELS.get(variant, variant)} | {_num(within)} | {_num(cross)} | {verdict} |")
    return lines


def _pm(stat: dict, scale: float, digits: int = 1) -> str:
    if len(stat["values"]) < 2:
        return f"{scale * stat['mean']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def teachers_row(tasks: Sequence[str], teachers: dict[str, dict], dataset: str) -> dict:
    """The single-task teachers as one row (one run per task, so one 'seed')."""
    from mtl.train.metrics import decathlon_score

    accuracy = {t: teachers[t]["val_accuracy"][t] for t in tasks}
    params = float(np.mean([teachers[t]["resources"][t]["params"] for t in tasks]))
    seed = {"seed": 0, "accuracy": accuracy, "decathlon_score": decathlon_score(accuracy, get_dataset(dataset))}
    row = variant_row("teachers", [seed], 1.0, params, None, tasks, dataset)
    row["label"] = "single-task (teachers)"
    return row
