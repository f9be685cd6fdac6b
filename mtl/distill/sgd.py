"""Per-task Nesterov SGD over stacked student weights, with the partition's update masks.

As the train job: each task has its own optimizer (own momentum buffers) over the shared weights and
its own BatchNorms; weight decay and momentum act on every entry, but a task's step changes only the
entries its masks allow (the train job restores the others after `optimizer.step()`, here the step is
multiplied by the mask: the same numbers). Same update rule as torch.optim.SGD(nesterov=True).
"""

from __future__ import annotations

import torch
from torch import Tensor


class TaskSGD:
    """One momentum buffer set per task over `shared + own[t]`.

    Args:
        shared: parameters every task steps (stacked conv weights).
        own: per task, the parameters only it steps (its BatchNorm weights and biases).
        momentum, weight_decay: as torch.optim.SGD (Nesterov).
    """

    def __init__(self, shared: list[Tensor], own: list[list[Tensor]], momentum: float, weight_decay: float):
        self.shared, self.own = shared, own
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: list[list[Tensor] | None] = [None] * len(own)

    def step(self, t: int, lr: float, masks: list[Tensor]) -> None:
        """Update with task t's gradients; `masks[i]` (float, broadcastable) limits shared[i]'s change."""
        params = self.shared + self.own[t]
        grads = [p.grad for p in params]
        if self.buffers[t] is None:
            self.buffers[t] = [torch.zeros_like(p) for p in params]
        bufs = self.buffers[t]
        with torch.no_grad():
            if self.weight_decay:
                torch._foreach_add_(grads, params, alpha=self.weight_decay)
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, grads)
            torch._foreach_add_(grads, bufs, alpha=self.momentum)  # Nesterov: g + momentum * buf
            for grad, mask in zip(grads, masks):
                grad.mul_(mask)
            torch._foreach_add_(params, grads, alpha=-lr)
        for p in params:
            p.grad = None

    def state_dict(self) -> dict:
        return {"buffers": [[b.clone() for b in bufs] if bufs is not None else [] for bufs in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        self.buffers = [[b.to(p.device) for b, p in zip(bufs, self.shared + self.own[t])] if bufs else None
                        for t, bufs in enumerate(state["buffers"])]
