"""pcgrad: gradient surgery, projecting away conflicting components (Yu et al., NeurIPS 2020)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from mtl.methods.base import (METHODS, GradientOptions, Method, StepInfo, check_choice, generator_state,
                              seeded_generator)
from mtl.methods.gramian import apply_update, cosine_diagnostics, task_gradients


@dataclass
class PCGradOptions(GradientOptions):
    reduction: str = field(default="sum", metadata={
        "help": "sum the projected gradients (paper, LibMTL, TorchJD) or average them (Pytorch-PCGrad)"})
    seed: int = field(default=0, metadata={"help": "seed of the projection-order generator"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("reduction", self.reduction, ("sum", "mean"))


def pcgrad_matrix(gramian: torch.Tensor, orders: Sequence[Sequence[int]]) -> torch.Tensor:
    """Row i = coefficients of g_i^PC in terms of g_1..g_K (so g_i^PC = W[i] @ J).

    For each i, for j in orders[i] (j != i): if g_i^PC . g_j < 0, subtract (g_i^PC . g_j / ||g_j||^2) g_j,
    always projecting against the original g_j.
    """
    k = gramian.shape[0]
    matrix = torch.eye(k, dtype=torch.float64)
    for i in range(k):
        for j in orders[i]:
            if j == i or gramian[j, j] <= 0:
                continue
            inner = gramian[j] @ matrix[i]
            if inner < 0:
                matrix[i, j] -= inner / gramian[j, j]
    return matrix


@METHODS.register("pcgrad")
class PCGrad(Method):
    """Update sum_i g_i^PC, each g_i projected on the normal plane of every g_j it conflicts with.

    Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020, Algorithm 1: one fresh
    uniformly random order of the other tasks per i (K = 2 is deterministic), projections against
    the original g_j, sum convention. Computed on the Gramian (as TorchJD), so the update is
    J^T w with w = column sums of the projection matrix. Heads unweighted. The order generator is
    the method's own (seeded, checkpointed).
    """

    Options = PCGradOptions

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self._generator = seeded_generator(self.options.seed)

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        gramian = grads.gramian()
        orders = [torch.randperm(self.num_tasks, generator=self._generator).tolist()
                  for _ in range(self.num_tasks)]
        weights = pcgrad_matrix(gramian, orders).sum(0)
        if self.options.reduction == "mean":
            weights = weights / self.num_tasks
        heads = weights if self.options.heads == "weighted" else torch.ones_like(weights)
        apply_update(losses, parts, grads, weights, heads)
        return StepInfo(weights.tolist(), source, self.options.heads, cosine_diagnostics(gramian))

    def _extra_state(self):
        return {"generator": generator_state(self._generator)}

    def _load_extra_state(self, state):
        self._generator.set_state(state["generator"])
