"""famo: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mtl.methods.base import METHODS, Method, StepInfo, check_positive

_EPS = 1e-8


@dataclass
class FAMOOptions:
    lr: float = field(default=0.025, metadata={"help": "Adam learning rate of the task logits (paper: 0.025)"})
    weight_decay: float = field(default=1e-3, metadata={
        "help": "Adam weight decay of the logits (paper Alg. 2, LibMTL, TorchJD: 1e-3; official class: 1e-5)"})
    min_loss: float = field(default=0.0, metadata={"help": "lower bound b subtracted from every loss"})

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)


@METHODS.register("famo")
class FAMO(Method):
    """Loss c sum_k z_k log(L_k - b + eps), z = softmax(w), c = 1 / sum_k z_k / (L_k - b + eps) (detached).

    Cranial-XIX/FAMO ``famo.py``: the gradient is the convex combination sum_k z_k c/(L_k-b+eps) g_k
    (reported as the weights; they sum to 1), one backward pass, heads weighted. After the model
    step, ``after_step`` gets the losses of the *same batch* and takes one Adam step on w along
    J_softmax^T delta, delta_k = log(L_k before) - log(L_k after). If the loop passes no losses,
    the next step's losses (before its update) stand in for them. Losses must stay above b.
    """

    Options = FAMOOptions
    needs_losses_after_step = True

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self.logits = nn.Parameter(torch.zeros(num_tasks))
        self.register_buffer("_before", torch.zeros(num_tasks))
        self._pending = False  # an update waits for the losses after the step
        self._optimizer = torch.optim.Adam([self.logits], lr=self.options.lr,
                                           weight_decay=self.options.weight_decay)

    def _backward(self, losses, parts, source):
        values = torch.stack([loss.detach() for loss in losses]).float()
        if self._pending:  # the loop gave no post-step losses: use this step's
            self._update(values)
        shifted = torch.stack(losses) - self.options.min_loss + _EPS
        z = torch.softmax(self.logits.detach(), 0)
        c = 1.0 / (z / shifted.detach()).sum()
        (c * (z * shifted.log()).sum()).backward()
        self._before.copy_(values)
        self._pending = True
        weights = (c * z / shifted.detach()).tolist()
        return StepInfo(weights, "shared", "weighted", {f"z/{k}": v for k, v in enumerate(z.tolist())})

    def after_step(self, losses_after=None):
        if losses_after is not None and self._pending:
            self._update(torch.stack([torch.as_tensor(v).detach().reshape(()) for v in losses_after]).float())

    def _update(self, after: torch.Tensor) -> None:
        b = self.options.min_loss
        delta = (self._before - b + _EPS).log() - (after.to(self._before.device) - b + _EPS).log()
        with torch.enable_grad():
            z = torch.softmax(self.logits, 0)
            self.logits.grad = torch.autograd.grad(z, self.logits, grad_outputs=delta)[0]
        self._step_own_optimizer()
        self._pending = False

    def _extra_state(self):
        return {"pending": self._pending}

    def _load_extra_state(self, state):
        self._pending = bool(state["pending"])
