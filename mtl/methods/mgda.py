"""mgda: multiple-gradient descent, the min-norm point of the gradients' convex hull (Sener & Koltun, 2018).

``mgda_ub`` is the same method with the paper's upper-bound gradient source (the representation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import METHODS, GradientOptions, Method, StepInfo, check_choice
from mtl.methods.gramian import apply_update, cosine_diagnostics, task_gradients
from mtl.methods.qp import min_norm_weights

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@dataclass
class MGDAOptions(GradientOptions):
    normalize: str = field(default="none", metadata={
        "help": "scale g_k before solving (not in the paper): none | l2 (||g_k||) | loss (L_k) | loss+ (L_k ||g_k||)"})
    weights_on: str = field(default="raw", metadata={
        "help": "apply the weights to the raw gradients (official code) or to the normalised ones (LibMTL)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_choice("weights_on", self.weights_on, ("raw", "normalized"))


@dataclass
class MGDAUBOptions(MGDAOptions):
    source: str = field(default="representation", metadata={
        "help": "MGDA-UB takes gradients w.r.t. the shared representation (batch flattened into the vector)"})


def normalizers(gramian: torch.Tensor, losses: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-task scale s_k of the official 'gradient_normalizers' (g_k is divided by s_k)."""
    norms = gramian.diagonal().clamp_min(0).sqrt()
    scale = {"none": torch.ones_like(norms), "l2": norms, "loss": losses, "loss+": losses * norms}[mode]
    return scale.clamp_min(1e-12)


@METHODS.register("mgda")
class MGDA(Method):
    """alpha = argmin over the simplex of ||sum_k alpha_k g_k||^2, solved exactly on the Gramian.

    Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018 (MGDA of
    Desideri 2012). Exact active-set QP (no 0.999/0.001 clipping of the official 2-task rule, no
    Frank-Wolfe tolerance), so the KKT conditions hold to rounding. The shared update is
    sum_k alpha_k g_k (weights sum to 1: mean-like scale). With ``normalize`` the problem is solved
    for g_k / s_k; ``weights_on='raw'`` then applies alpha to the raw gradients (official
    ``train_multi_task.py`` scales the raw losses), ``'normalized'`` uses alpha_k / s_k (LibMTL).
    Heads: unweighted by default (the paper's Algorithm 2 and LibMTL; the official code weights
    them, ``heads='weighted'``).
    """

    Options = MGDAOptions

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        gramian = grads.gramian()
        values = torch.stack([loss.detach() for loss in losses]).double().cpu()
        scale = normalizers(gramian, values, self.options.normalize)
        alpha = min_norm_weights(gramian / (scale[:, None] * scale[None, :]))
        weights = alpha / scale if self.options.weights_on == "normalized" else alpha
        heads = weights if self.options.heads == "weighted" else torch.ones_like(weights)
        apply_update(losses, parts, grads, weights, heads)
        extras = cosine_diagnostics(gramian)
        extras["min_norm"] = float(weights @ gramian @ weights) ** 0.5
        return StepInfo(weights.tolist(), source, self.options.heads, extras)


@METHODS.register("mgda_ub")
class MGDAUB(MGDA):
    """MGDA-UB: MGDA on the gradients w.r.t. the shared representation (Sener & Koltun, Sec. 3.3)."""

    Options = MGDAUBOptions
