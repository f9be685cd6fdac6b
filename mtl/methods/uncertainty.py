"""uncertainty: homoscedastic uncertainty weighting with learned log-variances (Kendall et al., 2018)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mtl.methods.base import METHODS, Method, StepInfo, check_choice, check_positive, make_optimizer


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
        factor = 0.5 if self.options.form == "regression" else 1.0
        weights = factor * torch.exp(-self.log_var)
        total = sum(w * loss + 0.5 * s for w, s, loss in zip(weights.unbind(), self.log_var.unbind(), losses))
        total.backward()
        self._step_own_optimizer()
        return StepInfo(weights.detach().tolist(), "shared", "weighted",
                        {f"log_var/{k}": v for k, v in enumerate(self.log_var.detach().tolist())})
