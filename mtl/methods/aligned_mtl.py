"""aligned_mtl: Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import METHODS, GradientOptions, Method, StepInfo, check_choice
from mtl.methods.gramian import apply_update, cosine_diagnostics, task_gradients
from mtl.methods.qp import undefined_weights


@dataclass
class AlignedMTLOptions(GradientOptions):
    scale_mode: str = field(default="min", metadata={
        "help": "eigenvalue the aligned gradients are scaled to: min (official default) | median | rmse (mean)"})
    reduction: str = field(default="sum", metadata={
        "help": "sum the aligned task gradients (official balancer) or average them (TorchJD)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("scale_mode", self.scale_mode, ("min", "median", "rmse"))
        check_choice("reduction", self.reduction, ("sum", "mean"))


def aligned_mtl_weights(gramian: torch.Tensor, scale_mode: str = "min", reduction: str = "sum") -> torch.Tensor:
    """Weights B 1 (sum) or B 1/K (mean), B = sqrt(s) V Lambda^{-1/2} V^T on the rank-r eigenspace of G.

    The aligned gradients J^T B have orthogonal directions and equal norms sqrt(s) (s = smallest,
    median or mean nonzero eigenvalue): the gradient matrix's condition number becomes 1.
    """
    if (undefined := undefined_weights(gramian)) is not None:
        return undefined
    g = gramian.double()
    k = g.shape[0]
    eigvals, eigvecs = torch.linalg.eigh(g)
    tol = float(eigvals.max()) * k * torch.finfo(torch.float64).eps
    keep = eigvals > tol
    if not bool(keep.any()):
        return torch.zeros(k, dtype=torch.float64)
    lam, vec = eigvals[keep], eigvecs[:, keep]
    s = {"min": lam.min(), "median": lam.median(), "rmse": lam.mean()}[scale_mode]
    balance = s.sqrt() * vec @ torch.diag(lam.rsqrt()) @ vec.T
    pref = torch.ones(k, dtype=torch.float64) / (1.0 if reduction == "sum" else k)
    return balance @ pref


@METHODS.register("aligned_mtl")
class AlignedMTL(Method):
    """Align the task gradients to an orthogonal, equal-norm set (Procrustes) and combine them.

    SamsungLabs/MTL ``code/optim/aligned`` (ProcrustesSolver, balancer ``amtl``): eigendecomposition
    of the Gramian, scale ``min`` by default, aligned gradients *summed*; TorchJD ``AlignedMTL``
    averages them (``reduction='mean'``). Aligned-MTL-UB = ``source='representation'``. Heads
    unweighted (official ``scale_decoder_grad=False``).
    """

    Options = AlignedMTLOptions

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        gramian = grads.gramian()
        weights = aligned_mtl_weights(gramian, self.options.scale_mode, self.options.reduction)
        heads = weights if self.options.heads == "weighted" else torch.ones_like(weights)
        apply_update(losses, parts, grads, weights, heads)
        return StepInfo(weights.tolist(), source, self.options.heads, cosine_diagnostics(gramian))
