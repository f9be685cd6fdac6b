"""naive: one optimizer per task (Hydra's 'Naive'; the default of the Feature Partitioning system)."""

from __future__ import annotations

from mtl.errors import UserError
from mtl.methods.base import METHODS, Method


@METHODS.register("naive")
class Naive(Method):
    """Each task steps its own optimizer over (shared + its own) parameters with its own gradient.

    Hydra (hav4ik/Hydra, 'Naive: a separate optimizer for each task') and the original system
    (google/multi-task-architecture-search: one SGD per task, separate momentum over shared weights).
    No weighting: every task's loss is used as is (sum convention, each in its own step).

    The method only marks the regime: ``uses_task_optimizers`` makes the train job step with
    ``NaiveSteps`` (mtl/train/method_step.py), which samples one task per step and steps that task's
    own SGD over ``model.parameters_for(task)`` (mtl/train/task_step.py ``train_step``).
    """

    uses_task_optimizers = True

    def _backward(self, losses, parts, source):
        raise UserError("method 'naive' uses one optimizer per task: the train job steps it with NaiveSteps "
                        "(mtl/train/method_step.py), one task's own optimizer per step, not with backward()")
