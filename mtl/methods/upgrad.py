"""upgrad: unconflicting projection of gradients (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization")."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import METHODS, GradientOptions, Method, StepInfo, check_choice, check_positive
from mtl.methods.gramian import apply_update, cosine_diagnostics, task_gradients
from mtl.methods.qp import solve_qp, undefined_weights


@dataclass
class UPGradOptions(GradientOptions):
    norm_eps: float = field(default=1e-4, metadata={"help": "trace below which the Gramian counts as zero"})
    reg_eps: float = field(default=1e-4, metadata={"help": "ridge added to the normalised Gramian"})
    reg_scale: str = field(default="smallest", metadata={
        "help": "what the Gramian is normalised by before the ridge: smallest (the smallest non-zero task "
                "gradient's squared norm: a small task is never contradicted) or trace (TorchJD 0.18)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("norm_eps", self.norm_eps, allow_zero=True)
        check_positive("reg_eps", self.reg_eps, allow_zero=True)
        check_choice("reg_scale", self.reg_scale, ("smallest", "trace"))


def upgrad_weights(gramian: torch.Tensor, norm_eps: float = 1e-4, reg_eps: float = 1e-4,
                   reg_scale: str = "smallest") -> torch.Tensor:
    """Sum over i of the dual-cone projection weights of g_i / K (TorchJD ``UPGradWeighting``).

    Projection of J^T u onto the dual cone of the rows = J^T v with v = argmin v^T G v s.t. v >= u
    (Prop. 1 of the paper); G is normalised and regularised by reg_eps I first. The ridge lets the
    update conflict with task i by up to reg_eps * scale * v_i: with reg_scale "trace" (TorchJD) that
    contradicts a task 30x smaller than another; "smallest" scales it to the smallest task's squared
    norm, so no task is contradicted beyond ~reg_eps of its own norm (issue 14.8).
    """
    if (undefined := undefined_weights(gramian)) is not None:
        return undefined
    k = gramian.shape[0]
    g = gramian.double()
    trace = float(g.diagonal().sum())
    diagonal = g.diagonal()
    smallest = float(diagonal[diagonal > trace * 1e-300].min()) if trace >= norm_eps else 0.0
    scale = trace if reg_scale == "trace" else smallest
    g = g / scale if trace >= norm_eps else torch.zeros_like(g)
    g = g + reg_eps * torch.eye(k, dtype=torch.float64)
    weights = torch.zeros(k, dtype=torch.float64)
    for i in range(k):
        u = torch.zeros(k, dtype=torch.float64)
        u[i] = 1.0 / k
        weights += u + solve_qp(g, g @ u)  # v = u + x, x >= 0 minimises (u + x)^T G (u + x)
    return weights


@METHODS.register("upgrad")
class UPGrad(Method):
    """Average of each g_k projected onto the dual cone of all task gradients (conflicts with no task
    beyond the ridge: ~reg_eps of that task's own norm with the default reg_scale "smallest").

    TorchJD 0.18 ``UPGrad`` with the default (mean) preference: each projection solves a small
    QP exactly (active set here, quadprog there). Mean-like scale; heads unweighted (TorchJD's
    ``mtl_backward`` gives heads their own gradients).
    """

    Options = UPGradOptions

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        gramian = grads.gramian()
        weights = upgrad_weights(gramian, self.options.norm_eps, self.options.reg_eps, self.options.reg_scale)
        heads = weights if self.options.heads == "weighted" else torch.ones_like(weights)
        apply_update(losses, parts, grads, weights, heads)
        return StepInfo(weights.tolist(), source, self.options.heads, cosine_diagnostics(gramian))
