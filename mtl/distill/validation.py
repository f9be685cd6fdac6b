"""How well the proxy ranks partitions: rank correlation with full training, bootstrap CIs, report, plot.

Everything here is a pure function of the raw data file (proxy_validation.json), so the numbers can
be recomputed from it: `summarize(raw)` gives the same summary the job reported.

Raw data layout::

    {"tasks": [...], "bootstrap": B, "bootstrap_seed": s, "budgets": {name: {schedule}},
     "candidates": [{"id", "preset", "resource", "full": {"score", "per_task", ...},
                     "proxy": {budget name: {"score", "per_task", ...}}}]}
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

CI = (2.5, 97.5)


def rank_correlations(x: Sequence[float], y: Sequence[float], bootstrap: int = 1000, seed: int = 0) -> dict:
    """Spearman and Kendall (tau-b) of x vs y, p-values, and percentile bootstrap 95% CIs over pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = {"n": len(x)}
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, len(x), len(x)) for _ in range(bootstrap)]
    for name, fn in (("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        with warnings.catch_warnings():  # constant inputs: the value is nan, said in the report as "-"
            warnings.simplefilter("ignore")
            value, p = fn(x, y) if len(x) > 2 else (math.nan, math.nan)
            boot = np.array([_statistic(fn, x[i], y[i]) for i in samples])
        boot = boot[np.isfinite(boot)]
        low, high = np.percentile(boot, CI) if len(boot) else (math.nan, math.nan)
        out[name] = {"value": _num(value), "p": _num(p), "ci": [_num(low), _num(high)]}
    return out


def _statistic(fn, x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # a resample with one distinct value has no rank correlation
        return math.nan
    return float(fn(x, y)[0])


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho, None when undefined (fewer than 3 points or a constant input)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _num(stats.spearmanr(x, y)[0])


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


SIGNALS = {"kl": "teacher-student KL on the validation subset (lower is better)",
           "loss": "final training distillation loss (lower is better)"}


def summarize(raw: dict) -> dict:
    """Per budget: correlations of proxy score vs full-training score (all candidates), per-task Spearman,
    the same for the proxy's other signals (-KL, -loss), and for the candidates' mean channel fraction
    alone (how much resource by itself explains)."""
    candidates = raw["candidates"]
    full = [c["full"]["score"] for c in candidates]
    b, seed = raw.get("bootstrap", 1000), raw.get("bootstrap_seed", 0)
    summary = {"n": len(candidates), "budgets": {}}
    for name in raw["budgets"]:
        proxy = [c["proxy"][name]["score"] for c in candidates]
        entry = rank_correlations(proxy, full, b, seed)
        entry["per_task_spearman"] = {t: _spearman([c["proxy"][name]["per_task"][t] for c in candidates],
                                                   [c["full"]["per_task"][t] for c in candidates])
                                      for t in raw["tasks"]}
        entry["signals"] = {
            signal: rank_correlations([-np.mean(list(c["proxy"][name][signal].values())) for c in candidates],
                                      full, b, seed)
            for signal in SIGNALS if all(signal in c["proxy"][name] for c in candidates)}
        summary["budgets"][name] = entry
    summary["resource"] = rank_correlations([c["resource"] for c in candidates], full, b, seed)
    seeds = [c["full"].get("seed_scores", []) for c in candidates]
    if all(len(s) >= 2 for s in seeds):  # full training against itself: the ceiling at this training noise
        k = min(map(len, seeds))
        ids = candidates[0]["full"].get("seeds", list(range(k)))[:k]
        summary["full_seed_agreement"] = seed_agreement(np.array([s[:k] for s in seeds]), ids)
    return summary


def seed_agreement(scores: np.ndarray, seed_ids: Sequence[int] | None = None) -> dict:
    """How reproducible the full-training ranking is. `scores`: one row per partition, one column per
    training seed (`seed_ids`). Spearman of every pair of seeds and their mean r (what one seed's ranking
    can say about another's); the Spearman-Brown reliability of the k-seed mean the proxy is scored
    against, k r / (1 + (k - 1) r), and its square root, the correlation a perfect proxy could expect
    with that mean (both None when the pairs do not agree on average, r <= 0). Every pair counts,
    because one pair alone can agree far better than the others do."""
    k = scores.shape[1]
    ids = list(seed_ids) if seed_ids is not None else list(range(k))
    pairs = {f"{ids[i]}-{ids[j]}": _spearman(scores[:, i], scores[:, j]) for i in range(k) for j in range(i + 1, k)}
    values = [v for v in pairs.values() if v is not None]
    mean = _num(np.mean(values)) if values else None
    reliability = k * mean / (1 + (k - 1) * mean) if mean is not None and mean > 0 else None
    return {"pairs": pairs, "mean_pair_spearman": mean, "seeds": k, "mean_of_seeds_reliability": reliability,
            "mean_of_seeds_ceiling": math.sqrt(reliability) if reliability is not None else None}


def render_report(raw: dict, summary: dict) -> str:
    """Markdown: one row per budget (Spearman, Kendall with CIs), the resource baseline, settings."""
    lines = [f"# Proxy validation: {summary['n']} partitions, tasks {', '.join(raw['tasks'])}", "",
             "Proxy score vs full multi-task training score (mean over tasks of val accuracy / reference); "
             f"95% percentile bootstrap CIs over {raw.get('bootstrap', 1000)} resamples of the partitions.", "",
             "| budget | schedule | Spearman [95% CI] | Kendall [95% CI] | seconds / candidate |",
             "|---|---|---|---|---|"]
    for name, entry in summary["budgets"].items():
        budget = raw["budgets"][name]
        schedule = ", ".join(f"{k}={v}" for k, v in budget.items() if not k.endswith("seconds_per_candidate")
                             and k != "cache_seconds")
        lines.append(f"| {name} | {schedule} | {_fmt(entry['spearman'])} | {_fmt(entry['kendall'])} | "
                     f"{budget.get('seconds_per_candidate', float('nan')):.2f} |")
    res = summary["resource"]
    lines += [f"| (mean channel fraction alone) | - | {_fmt(res['spearman'])} | {_fmt(res['kendall'])} | - |"]
    if "full_seed_agreement" in summary:
        agree = summary["full_seed_agreement"]
        pairs = ", ".join(f"{p} {_opt(v)}" for p, v in agree["pairs"].items())
        lines += [f"| (full training, one seed vs another: mean over the pairs {pairs}) | - | "
                  f"{_opt(agree['mean_pair_spearman'])} | - | - |",
                  f"| (the noise ceiling: what a perfect proxy could reach against the {agree['seeds']}-seed mean, "
                  f"the square root of its Spearman-Brown reliability; - when the seeds do not agree) | - | "
                  f"{_opt(agree['mean_of_seeds_ceiling'])} | - | - |"]
    lines += ["",
              "Per-task Spearman (proxy task score vs full-training task accuracy):", ""]
    lines += [f"- {name}: " + ", ".join(f"{t} {v:.2f}" if v is not None else f"{t} -"
                                        for t, v in entry["per_task_spearman"].items())
              for name, entry in summary["budgets"].items()]
    lines += ["", "Other signals of the same runs, negated so that higher is better (Spearman [95% CI]):", ""]
    lines += [f"- {name}: " + "; ".join(f"-{s} {_fmt(v['spearman'])}" for s, v in entry["signals"].items())
              for name, entry in summary["budgets"].items() if entry["signals"]]
    lines += [f"  ({s}: {text})" for s, text in SIGNALS.items()]
    return "\n".join(lines) + "\n"


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _fmt(entry: dict) -> str:
    value, (low, high) = entry["value"], entry["ci"]
    if value is None:
        return "-"
    return f"{value:.3f} [{low:.2f}, {high:.2f}]" if low is not None else f"{value:.3f}"


def plot_scatter(raw: dict, summary: dict, path: str | Path) -> Path:
    """One panel per budget: proxy score (x) vs full-training score (y), presets labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(raw["budgets"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    full = [c["full"]["score"] for c in raw["candidates"]]
    for ax, name in zip(axes[0], names):
        proxy = [c["proxy"][name]["score"] for c in raw["candidates"]]
        ax.scatter(proxy, full, s=18, c=[c["resource"] for c in raw["candidates"]], cmap="viridis")
        for c, x, y in zip(raw["candidates"], proxy, full):
            if c.get("preset"):
                ax.annotate(c["preset"], (x, y), fontsize=7)
        rho = summary["budgets"][name]["spearman"]["value"]
        ax.set_title(f"{name}: Spearman {rho:.2f}" if rho is not None else name, fontsize=9)
        ax.set_xlabel("proxy score")
    axes[0][0].set_ylabel("full training score (colour: channel fraction)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
