"""Evaluation metrics: accuracy, the Visual Decathlon score and the multi-task Δm.

Accuracies here are fractions in [0, 1]; `DomainSpec.baseline_acc` is in percent (as published).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from torch import Tensor

from mtl.data.domains import DECATHLON
from mtl.data.specs import DatasetSpec

GAMMA = 2.0  # decathlon exponent γ_d


def correct_count(logits: Tensor, labels: Tensor, k: int = 1) -> int:
    """Number of samples whose label is among the top-`k` logits."""
    topk = logits.topk(min(k, logits.shape[-1]), dim=-1).indices
    return int((topk == labels.view(-1, 1)).any(dim=-1).sum())


def accuracy(logits: Tensor, labels: Tensor, k: int = 1) -> float:
    """Top-`k` accuracy in [0, 1] of a batch (0.0 for an empty batch)."""
    return correct_count(logits, labels, k) / max(len(labels), 1)


def decathlon_points(acc: float, baseline_acc: float) -> float:
    """One domain's decathlon score (Rebuffi et al. 2017; reference §5.4).

    Points = α (E_max - E)^γ for error E below E_max = 2 E_base, with γ = 2 and
    α = 1000 / E_max^γ: the baseline scores 250, a perfect model 1000, errors >= E_max score 0.

    Args:
        acc: the model's accuracy, a fraction in [0, 1].
        baseline_acc: the baseline's accuracy in percent (`DomainSpec.baseline_acc`).
    """
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {acc} (percent given?)")
    e_max = 2.0 * (1.0 - baseline_acc / 100.0)
    return 1000.0 * max(0.0, e_max - (1.0 - acc)) ** GAMMA / e_max**GAMMA


def decathlon_score(accuracies: Mapping[str, float], spec: DatasetSpec = DECATHLON) -> float:
    """Sum of `decathlon_points` over the given domains (10 decathlon domains at baseline: 2500).

    Args:
        accuracies: domain name -> accuracy fraction; every name must be a domain of `spec`.
        spec: dataset whose `baseline_acc` values define E_base.
    """
    return sum(decathlon_points(acc, spec.domain(name).baseline_acc) for name, acc in accuracies.items())


def delta_m(values: Mapping[str, float], baselines: Mapping[str, float],
            lower_is_better: Sequence[str] = ()) -> float:
    """Mean relative change over tasks vs single-task baselines, in percent (Maninis et al. 2019).

    Δm = 100 / T Σ_t (-1)^{l_t} (M_t - B_t) / B_t, with l_t = 1 for lower-is-better metrics;
    positive means better than the baselines.
    """
    if not values:
        raise ValueError("delta_m needs at least one task")
    total = 0.0
    for name, value in values.items():
        sign = -1.0 if name in lower_is_better else 1.0
        total += sign * (value - baselines[name]) / baselines[name]
    return 100.0 * total / len(values)
