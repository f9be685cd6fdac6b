"""naive: one optimizer per task (Hydra's 'Naive'; the default of the Feature Partitioning system)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mtl.errors import UserError
from mtl.methods.base import METHODS, Method, SharedParts, StepInfo


@METHODS.register("naive")
class Naive(Method):
    """Each task steps its own optimizer over (shared + its own) parameters with its own gradient.

    Hydra (hav4ik/Hydra, 'Naive: a separate optimizer for each task') and the original system
    (google/multi-task-architecture-search: one SGD per task, separate momentum over shared weights).
    No weighting: every task's loss is used as is (sum convention, each in its own step).

    The loop builds ``task_optimizers[k]`` over the shared parameters plus task k's parameters and
    calls ``step_task_optimizers`` instead of ``backward`` + ``optimizer.step()``. Tasks not trained
    this step (the original samples one task per step) have loss None.
    """

    uses_task_optimizers = True

    def _backward(self, losses, parts, source):
        raise UserError("method 'naive' uses one optimizer per task: the training loop must call "
                        "method.step_task_optimizers(losses, parts, task_optimizers)")

    def step_task_optimizers(self, losses: Sequence[Tensor | None], parts: SharedParts,
                             task_optimizers: Sequence[torch.optim.Optimizer]) -> StepInfo:
        """All present tasks' gradients first (the graph holds the unchanged weights), then each
        task's optimizer steps with only its own gradient in ``.grad``.

        Args:
            losses: per task a scalar loss, or None when the task is not trained this step.
            parts: the model's shared parts (``params`` and ``task_params`` are used).
            task_optimizers: one optimizer per task.

        Returns:
            Weights 1 for the tasks trained this step, 0 otherwise.
        """
        if len(losses) != self.num_tasks or len(task_optimizers) != self.num_tasks:
            raise ValueError(f"naive was built for {self.num_tasks} tasks: give one loss (or None) "
                             "and one optimizer per task")
        params = list(parts.params) + list(parts.task_params)
        present = [k for k, loss in enumerate(losses) if loss is not None]
        grads = {}
        for n, k in enumerate(present):
            retain = not parts.separate_inputs and n < len(present) - 1
            grads[k] = torch.autograd.grad(losses[k], params, retain_graph=retain, allow_unused=True)
        for k in present:
            for p, g in zip(params, grads[k]):
                p.grad = g
            task_optimizers[k].step()
        for p in params:
            p.grad = None
        self.step_count += 1
        weights = [1.0 if k in grads else 0.0 for k in range(self.num_tasks)]
        return StepInfo(weights, "shared", "unweighted")
