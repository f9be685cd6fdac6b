"""The model contract: `MultiTaskModel`, all that the training steps and the methods use of a model.

Implemented by ResNet26 (mtl/models/resnet.py), PartitionedResNet26 (mtl/models/partitioned.py) and
GraphModel (mtl/models/graph.py); tests/test_models_contract.py checks each against it. The steps
(mtl/train/) never probe a model for attributes or reach into its layers: what a model does not
have, it implements trivially (a plain ResNet restricts no update, a ResNet weighs no loss).

`update_guard` is the one implementation of the backward-mask guard; every model's `guard_update`
is it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn

# A method's per-task transformation of the shared representation (RotoGrad): (z, task index) -> z'.
Adapter = Callable[[Tensor, int], Tensor]


@runtime_checkable
class MultiTaskModel(Protocol):
    """A model of several tasks, each with its own input batch: ``model(x, task) -> output``."""

    task_names: list[str]  # the tasks, in order (a task index is a position here)

    def __call__(self, x, task: str) -> Tensor:
        """The output (logits) of `task` for a batch of its inputs."""

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters more than one task uses."""

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Trainable parameters only `task` uses (its head, its BatchNorms, its loss weight)."""

    def parameters_for(self, task: str) -> list[nn.Parameter]:
        """What `task`'s own optimizer steps (method naive): shared parameters and its own."""

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last shared layer (gradient source ``last_shared``)."""

    def forward_with_representation(self, x, task: str, adapter: Adapter | None = None) -> tuple[Tensor, list[Tensor]]:
        """The output of `task` and the shared representation it was computed from (the shared
        tensors that feed the task's own layers; gradient source ``representation``). `adapter`, when
        given, transforms the representation on its way into the task's own layers (the adapter
        hook: RotoGrad's rotations); the returned representation is the one before it."""

    @property
    def zero_grads_to_none(self) -> bool:
        """Whether a task's optimizer may drop gradients (False: zero them, so that parameters in its
        optimizer that the task does not use are still decayed, as the original did)."""

    def update_masks(self, task: str) -> list[tuple[nn.Parameter, Tensor]]:
        """Weights with the entries `task` may change (broadcastable bool masks); weights not listed
        the task may change entirely (a model without backward masks lists none)."""

    def guard_update(self, *tasks: str) -> ContextManager[None]:
        """Around an optimizer step: restore the entries none of `tasks` may change (`update_guard`)."""

    def task_loss(self, task: str, loss: Tensor) -> Tensor:
        """`task`'s loss as the model declares it is weighted (identity unless the model says otherwise)."""


@contextmanager
def update_guard(model: MultiTaskModel, tasks: Sequence[str]) -> Iterator[None]:
    """Restore, after the step, weight entries that no task of `tasks` may update (backward masks).

    Weight decay and momentum would otherwise move entries whose gradients are masked. With one task
    this is that task's backward mask; with several (a combined step), their union.
    """
    # A weight a task does not list is one it may update entirely: only weights every task lists
    # can hold entries nobody may update.
    listed = [{id(w): (w, keep) for w, keep in model.update_masks(task) if w.requires_grad} for task in tasks]
    saved = []
    for key in set.intersection(*(set(m) for m in listed)) if listed else ():
        keep = listed[0][key][1]
        for masks in listed[1:]:
            keep = keep | masks[key][1]
        weight = listed[0][key][0]
        if not bool(keep.all()):
            saved.append((weight, keep, weight.detach().clone()))
    yield
    with torch.no_grad():
        for weight, keep, old in saved:
            weight.copy_(torch.where(keep, weight, old))
