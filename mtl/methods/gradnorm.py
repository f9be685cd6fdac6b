"""gradnorm: gradient normalization for adaptive loss balancing (Chen et al., ICML 2018)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mtl.methods.base import (METHODS, SOURCES, Method, StepInfo, check_choice, check_positive,
                              make_optimizer)
from mtl.methods.gramian import apply_update, task_gradients


@dataclass
class GradNormOptions:
    alpha: float = field(default=1.5, metadata={"help": "restoring-force strength alpha (paper NYUv2: 1.5)"})
    lr: float = field(default=0.025, metadata={"help": "learning rate of the task weights"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer of the task weights: adam | sgd"})
    source: str = field(default="", metadata={
        "help": "where G_k = ||grad(w_k L_k)|| is measured: '' = the model's source; the paper uses last_shared"})

    def __post_init__(self) -> None:
        check_positive("alpha", self.alpha, allow_zero=True)
        check_positive("lr", self.lr)
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_choice("source", self.source, ("",) + SOURCES)


@METHODS.register("gradnorm")
class GradNorm(Method):
    """Weights w (init 1, renormalised to sum K) trained so that ||grad(w_k L_k)|| follows Gbar r_k^alpha.

    Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018, Algorithm 1: G_k = w_k ||g_k|| on the
    gradient source (paper: last shared layer), Gbar = mean_k G_k, r_k = Ltilde_k / mean Ltilde,
    Ltilde_k = L_k / L_k(0) with L_k(0) the first step's loss; L_grad = sum_k |G_k - Gbar r_k^alpha|
    with the target held constant, so dL_grad/dw_k = sign(G_k - target_k) ||g_k||. The network
    update is backward of sum_k w_k L_k with the weights *before* their update (sum convention,
    heads weighted); then w takes one step of its own optimizer, is floored at 1e-6 and rescaled
    to sum K (SamsungLabs; LibMTL instead uses K softmax and all shared params).
    """

    Options = GradNormOptions

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self.task_weights = nn.Parameter(torch.ones(num_tasks))
        self.register_buffer("initial_losses", torch.zeros(num_tasks))
        self._optimizer = make_optimizer([self.task_weights], self.options.optimizer, self.options.lr)

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        norms = grads.gramian().diagonal().clamp_min(0).sqrt().float()
        values = torch.stack([loss.detach() for loss in losses]).float().cpu()
        if self.step_count == 0:
            self.initial_losses.copy_(values)
        weights = self.task_weights.detach().clone()
        apply_update(losses, parts, grads, weights, weights)
        grad, loss = gradnorm_weight_grad(weights.cpu(), norms, values, self.initial_losses.cpu(),
                                          self.options.alpha)
        self.task_weights.grad = grad.to(weights.device)
        self._step_own_optimizer()
        with torch.no_grad():
            w = self.task_weights.clamp_min(1e-6)
            self.task_weights.copy_(w * self.num_tasks / w.sum())
        return StepInfo(weights.tolist(), source, "weighted", {"gradnorm_loss": loss})


def gradnorm_weight_grad(weights, norms, losses, initial_losses, alpha):
    """dL_grad/dw and L_grad for L_grad = sum_k |w_k n_k - Gbar r_k^alpha| (target held constant).

    Args:
        weights, norms, losses, initial_losses: K-vectors (w_k, ||g_k||, L_k, L_k(0)).
        alpha: the restoring-force exponent.
    """
    scaled = weights * norms
    ratio = losses / initial_losses.clamp_min(1e-12)
    target = scaled.mean() * (ratio / ratio.mean()) ** alpha
    return torch.sign(scaled - target) * norms, float((scaled - target).abs().sum())
