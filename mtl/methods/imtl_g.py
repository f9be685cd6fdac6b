"""imtl_g: the gradient part of Impartial Multi-Task Learning (Liu et al., ICLR 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtl.methods.base import METHODS, GradientOptions, Method, StepInfo
from mtl.methods.gramian import apply_update, cosine_diagnostics, task_gradients
from mtl.methods.qp import undefined_weights


@dataclass
class IMTLGOptions(GradientOptions):
    pass


def imtl_g_weights(gramian: torch.Tensor) -> torch.Tensor:
    """w proportional to G^+ sqrt(diag G), summing to 1 (zeros if the sum vanishes).

    Then d = J^T w has equal projections d . g_k / ||g_k|| on every task (IMTL-G's defining
    property) when the gradients are linearly independent; the pseudo-inverse form is TorchJD's
    generalisation to dependent rows and equals LibMTL's closed form otherwise.
    """
    if (undefined := undefined_weights(gramian)) is not None:
        return undefined
    g = gramian.double()
    v = torch.linalg.pinv(g, hermitian=True) @ g.diagonal().clamp_min(0).sqrt()
    total = v.sum()
    return torch.zeros_like(v) if abs(float(total)) < 1e-12 else v / total


@METHODS.register("imtl_g")
class IMTLG(Method):
    """Update d = sum_k w_k g_k with sum w = 1 and equal projections of d on all unit task gradients.

    Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 (IMTL-G; the learned loss scales
    of IMTL-L are not included). Mean-like scale (weights sum to 1), heads unweighted (LibMTL).
    """

    Options = IMTLGOptions

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        gramian = grads.gramian()
        weights = imtl_g_weights(gramian)
        heads = weights if self.options.heads == "weighted" else torch.ones_like(weights)
        apply_update(losses, parts, grads, weights, heads)
        return StepInfo(weights.tolist(), source, self.options.heads, cosine_diagnostics(gramian))
