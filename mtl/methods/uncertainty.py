"""uncertainty: homoscedastic uncertainty weighting with learned log-variances (Kendall et al., 2018)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mtl.methods.base import METHODS, Method, StepInfo, check_choice, check_positive, make_optimizer


FACTORS = {"regression": 0.5, "classification": 1.0}  # c in c e^{-s} L + 1/2 s


def uncertainty_weight(log_var: Tensor, form: str = "regression") -> Tensor:
    """The factor c e^{-s} on a task's loss (elementwise over log-variances s)."""
    return FACTORS[form] * torch.exp(-log_var)


def uncertainty_loss(loss: Tensor, log_var: Tensor, form: str = "regression") -> Tensor:
    """Kendall et al.'s weighted loss c e^{-s} L + 1/2 s (elementwise); the one place it is written
    (this method, and the graph models' 'auto' loss weights, mtl/models/graph.py)."""
    return uncertainty_weight(log_var, form) * loss + 0.5 * log_var


@dataclass
class UncertaintyOptions:
    form: str = field(default="regression", metadata={
        "help": "regression: 1/2 e^-s L + 1/2 s (mtan, LibMTL, TorchJD); classification: e^-s L + 1/2 s"})
    init: float = field(default=0.0, metadata={
        "help": "initial log-variance s (0 as nash-mtl/TorchJD; LibMTL uses -0.5)"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer of the log-variances: adam | sgd"})
    lr: float = field(default=0.01, metadata={"help": "learning rate of the log-variances"})

    def __post_init__(self) -> None:
        check_choice("form", self.form, ("regression", "classification"))
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_positive("lr", self.lr)


@METHODS.register("uncertainty")
class Uncertainty(Method):
    """Loss sum_k c e^{-s_k} L_k + 1/2 s_k with learned s_k = log sigma_k^2 (c = 1/2 or 1).

    Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry
    and Semantics", CVPR 2018. Sum convention; one backward pass; heads are weighted like the shared
    parameters. The gradient w.r.t. s_k is 1/2 - c e^{-s_k} L_k (regression: 1/2 (1 - e^{-s_k} L_k)).
    The log-variances are stepped by the method's own optimizer inside ``backward``. Reported
    weights: c e^{-s_k} (the factor on L_k), as LibMTL reports.
    """

    Options = UncertaintyOptions

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self.log_var = nn.Parameter(torch.full((num_tasks,), float(self.options.init)))
        self._optimizer = make_optimizer([self.log_var], self.options.optimizer, self.options.lr)

    def _backward(self, losses, parts, source):
        weights = uncertainty_weight(self.log_var.detach(), self.options.form)  # before the step
        uncertainty_loss(torch.stack(list(losses)), self.log_var, self.options.form).sum().backward()
        self._step_own_optimizer()
        return StepInfo(weights.tolist(), "shared", "weighted",
                        {f"log_var/{k}": v for k, v in enumerate(self.log_var.detach().tolist())})
