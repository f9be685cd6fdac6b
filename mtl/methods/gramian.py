"""Per-task gradients (one task at a time into a K x d buffer), their Gramian, and writing updates.

The gradient-combination methods only need the K x K Gramian G = J J^T of the per-task gradients
J (K x d) to choose task weights; the update is then J^T w on the gradient source. Task-specific
parameters get each task's own gradient, scaled by the head weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from mtl.methods.base import SharedParts


@dataclass
class TaskGrads:
    """Per-task gradients of one step.

    Attributes:
        jacobian: K x d, row k = gradient of loss k w.r.t. the source tensors, flattened.
        head_grads: per task, gradients aligned with ``SharedParts.task_params`` (None = unused).
        inputs: the source tensors (shared params, last shared layer or representation).
        used: per source tensor, whether any task's loss reached it.
        source: the gradient source name.
        reducer: set when the rows are this rank's block of a data-parallel representation (other ranks
            hold other samples' features): the Gramian is then summed over ranks.
    """

    jacobian: Tensor
    head_grads: list[list[Tensor | None]]
    inputs: list[Tensor]
    used: list[bool]
    source: str
    reducer: Any = None

    def gramian(self) -> Tensor:
        """G = J J^T in float64 (K x K, on the CPU: the solvers are tiny), whatever the autocast dtype.

        Data-parallel representation rows: the global loss is the mean of the R ranks' losses, so the
        global rows are the ranks' blocks over R, and G = sum_r J_r J_r^T / R^2 (exact, K x K all-reduced).
        """
        gramian = (self.jacobian @ self.jacobian.T).double()  # the rows are float32 or wider (see below)
        if self.reducer is not None:
            self.reducer.sum_([gramian])
            gramian = gramian / self.reducer.world_size ** 2
        return gramian.cpu()

    def split(self, vector: Tensor) -> list[Tensor]:
        """Cut a flat source-sized vector into tensors shaped like the source tensors."""
        pieces, offset = [], 0
        for t in self.inputs:
            pieces.append(vector[offset:offset + t.numel()].view_as(t).to(t.dtype))
            offset += t.numel()
        return pieces


def task_gradients(losses: Sequence[Tensor], parts: SharedParts, source: str,
                   extra: Sequence[Tensor] = ()) -> tuple[TaskGrads, list[list[Tensor | None]]]:
    """Gradients of each loss w.r.t. the source tensors and the task-specific params, task by task.

    Args:
        losses: per-task scalar losses.
        parts: the model's shared parts.
        source: 'shared', 'last_shared' or 'representation'.
        extra: further tensors to differentiate (returned per task as the second result).

    Returns:
        The TaskGrads and, per task, the gradients of `extra`.
    """
    inputs = parts.tensors(source)
    heads = list(parts.task_params)
    targets = inputs + heads + list(extra)
    size = sum(t.numel() for t in inputs)
    dtype = torch.promote_types(inputs[0].dtype, torch.float32)
    jacobian = torch.zeros(len(losses), size, dtype=dtype, device=inputs[0].device)
    used = [False] * len(inputs)
    # The graph must survive for the final backward (non-'shared' sources) and, when tasks share
    # their forward pass, for the next task's gradient; otherwise free each task's graph at once.
    keep = source != "shared" or not parts.separate_inputs
    head_grads, extra_grads = [], []
    unscale = 1.0 / parts.grad_scale  # fp16: the losses' gradients are loss_scale times the true ones
    for k, loss in enumerate(losses):
        retain = keep and (source != "shared" or k < len(losses) - 1)
        grads = torch.autograd.grad(loss, targets, retain_graph=retain, allow_unused=True)
        offset = 0
        for i, (t, g) in enumerate(zip(inputs, grads)):
            if g is not None:
                jacobian[k, offset:offset + t.numel()] = g.reshape(-1)
                used[i] = True
            offset += t.numel()
        head_grads.append(_times(grads[len(inputs):len(inputs) + len(heads)], unscale))
        extra_grads.append(_times(grads[len(inputs) + len(heads):], unscale))
    if unscale != 1.0:
        jacobian.mul_(unscale)  # a power of 2: exact
    grads = _reduced(TaskGrads(jacobian, head_grads, inputs, used, source), parts.reducer)
    if parts.loss_scale is not None:  # averaged rows agree on every rank; representation rows: a collective
        check_finite([jacobian, *(g for task in head_grads for g in task if g is not None)], grads.reducer)
    return grads, extra_grads


class NonFiniteGradients(ArithmeticError):
    """A per-task gradient overflowed (fp16): the step is skipped before the method combines anything."""


def check_finite(tensors: Sequence[Tensor], reducer: Any = None) -> None:
    """NonFiniteGradients when any of `tensors` (on any rank, with `reducer`) is not finite."""
    bad = torch.stack([~torch.isfinite(t).all() for t in tensors]).any().float().reshape(1).cpu() \
        if tensors else torch.zeros(1)
    if reducer is not None:
        reducer.sum_([bad])
    if float(bad):
        raise NonFiniteGradients("a per-task gradient is not finite")


def _times(grads: Sequence[Tensor | None], factor: float) -> list[Tensor | None]:
    return [g if g is None or factor == 1.0 else g * factor for g in grads]


def _reduced(grads: TaskGrads, reducer: Any) -> TaskGrads:
    """Data-parallel: per-task gradients of the global batch (rows and heads averaged over the ranks;
    representation rows stay local and their Gramian is summed instead). Ranks agree on which
    gradients exist (the same tasks, the same graph), so the flat buffers line up."""
    if reducer is None:
        return grads
    heads = [g for task in grads.head_grads for g in task if g is not None]
    if grads.source == "representation":
        reducer.average_(heads)
        grads.reducer = reducer
    else:
        reducer.average_([grads.jacobian, *heads])
    return grads


def apply_update(losses: Sequence[Tensor], parts: SharedParts, grads: TaskGrads,
                 weights: Tensor | None, head_weights: Tensor | Sequence[float],
                 combined: Tensor | None = None) -> None:
    """Accumulate the update into ``.grad``: shared part from `weights` (or `combined`), heads scaled.

    Args:
        losses: the step's losses (used for the 'last_shared' source: backward of sum_k w_k L_k).
        parts: the model's shared parts.
        grads: this step's TaskGrads.
        weights: K task weights; the shared update is J^T weights.
        head_weights: K factors for each task's task-specific gradients.
        combined: a ready flat update for the source (instead of `weights`; not for 'last_shared').

    fp16 (``parts.loss_scale`` S): what is written into ``.grad`` is S times the update (the losses
    carry S into the 'last_shared' backward; the others are multiplied by S here).
    """
    scale = parts.grad_scale
    if grads.source == "last_shared":
        if combined is not None:
            raise ValueError("a combined (non-weighted) update cannot be taken from the last shared layer")
        total = sum(float(w) * loss for w, loss in zip(weights.tolist(), losses))
        torch.autograd.backward(total, inputs=list(parts.params))
    else:
        if combined is None:
            combined = weights.to(grads.jacobian) @ grads.jacobian
        if grads.source == "shared":
            pieces = grads.split(combined)
            accumulate([t for t, u in zip(grads.inputs, grads.used) if u],
                       [p for p, u in zip(pieces, grads.used) if u], scale, owned=True)
        else:  # scaled before the cast to the features' dtype (fp16: what the loss scale protects)
            torch.autograd.backward(grads.inputs, grads.split(combined * scale if scale != 1.0 else combined))
    if scale != 1.0:
        factors = head_weights.tolist() if isinstance(head_weights, Tensor) else list(head_weights)
        head_weights = [float(f) * scale for f in factors]
    write_head_grads(parts, grads.head_grads, head_weights)


def write_head_grads(parts: SharedParts, head_grads: list[list[Tensor | None]],
                     head_weights: Tensor | Sequence[float]) -> None:
    """Accumulate each task's task-specific gradients, times its head weight."""
    factors = head_weights.tolist() if isinstance(head_weights, Tensor) else list(head_weights)
    for factor, task_grads in zip(factors, head_grads):
        for p, g in zip(parts.task_params, task_grads):
            if g is not None:
                accumulate([p], [g], factor, owned=True)


def accumulate(tensors: Sequence[Tensor], grads: Sequence[Tensor], scale: float = 1.0,
               owned: bool = False) -> None:
    """``t.grad += scale * g`` for each pair, creating ``.grad`` where it is None.

    With ``owned=True`` a gradient nobody else holds may become ``.grad`` itself (no copy).
    """
    for t, g in zip(tensors, grads):
        g = g.to(t.dtype)
        if t.grad is None:
            t.grad = g * scale if scale != 1.0 else (g if owned else g.clone())
        else:
            t.grad.add_(g, alpha=scale)


def backward_weighted(losses: Sequence[Tensor], weights: Tensor) -> None:
    """Plain loss weighting: backward of sum_k w_k L_k (heads get w_k times their gradient)."""
    total = sum(w * loss for w, loss in zip(weights.to(losses[0].device).unbind(), losses))
    total.backward()


def cosine_diagnostics(gramian: Tensor) -> dict[str, float]:
    """Min pairwise cosine of the task gradients (negative = conflict) and the largest norm ratio."""
    norms = gramian.diagonal().clamp_min(0).sqrt()
    if len(norms) < 2 or float(norms.min()) == 0.0:
        return {}
    cos = gramian / (norms[:, None] * norms[None, :])
    off = cos[~torch.eye(len(norms), dtype=torch.bool)]
    return {"cos_min": float(off.min()), "norm_ratio": float(norms.max() / norms.min())}
