"""pareto.png of the pipeline: mean accuracy (± std over seeds) against resource for every variant."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MARKERS = {"es_best": ("*", "tab:red", 14), "random_best": ("D", "tab:purple", 8), "families": ("P", "tab:green", 11),
           "teachers": ("s", "0.4", 7)}


def plot_pareto(table: dict, path: Path) -> Path:
    """Every variant at (mean channel fraction, mean accuracy) with ± std error bars; the share_fixed
    curve drawn as a line; the oracle and the searched partitions marked."""
    summary = table["summary"]
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    curve = summary["curve"]
    if curve:
        ax.plot([x for x, _ in curve], [100 * y for _, y in curve], "-", color="tab:blue", lw=1.5,
                label="share_fixed curve (independent .. share_all)", zorder=1)
    for row in table["rows"]:
        stat = summary["variants"][row["variant"]]["mean"]
        marker, color, size = MARKERS.get(row["variant"], ("o", "tab:blue", 6))
        ax.errorbar(row["channels"], 100 * stat["mean"], yerr=100 * stat["std"], fmt=marker, color=color,
                    markersize=size, capsize=3, label=row["label"], zorder=2)
    ax.set_xlabel("resource: mean fraction of the partitioned channels a task uses")
    ax.set_ylabel("mean validation accuracy (%)")
    ax.set_title(f"{table['settings']['dataset']}: accuracy vs resource (mean ± std over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))
    return path
