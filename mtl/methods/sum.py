"""sum: equal weighting, the plain sum of the task losses."""

from __future__ import annotations

import torch

from mtl.methods.base import METHODS, Method, StepInfo
from mtl.methods.gramian import backward_weighted


@METHODS.register("sum")
class Sum(Method):
    """Backward of sum_k L_k: every task's gradient with weight 1, heads included.

    The 'EW' baseline of LibMTL (weights 1) and TorchJD ``Sum``; one backward pass, no per-task
    gradients. For the average of the task gradients see ``mean``.
    """

    def _backward(self, losses, parts, source):
        weights = torch.ones(self.num_tasks)
        backward_weighted(losses, weights)
        return StepInfo(weights.tolist(), "shared", "weighted")
