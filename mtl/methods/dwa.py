"""dwa: Dynamic Weight Average (Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import METHODS, Method, StepInfo, check_positive
from mtl.methods.gramian import backward_weighted


@dataclass
class DWAOptions:
    temperature: float = field(default=2.0, metadata={"help": "softmax temperature T (paper: 2)"})
    window: int = field(default=0, metadata={
        "help": "0: average losses over training rounds (end_round, the paper's epochs); "
                "N > 0: over windows of N steps (nash-mtl/SamsungLabs use 25)"})

    def __post_init__(self) -> None:
        check_positive("temperature", self.temperature)
        check_positive("window", self.window, allow_zero=True)


@METHODS.register("dwa")
class DWA(Method):
    """lambda_k = K softmax_k(w / T), w_k = Lbar_k(t-1) / Lbar_k(t-2); lambda = 1 for the first two periods.

    Lbar = training loss averaged over a period (a round, or ``window`` steps). Sum convention as in
    the paper, mtan, LibMTL and TorchJD (weights sum to K); nash-mtl and SamsungLabs divide by K.
    One backward pass; heads weighted. State: the running sums and the last two averages.
    """

    Options = DWAOptions

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self._sums = [0.0] * num_tasks
        self._count = 0
        self._history: list[list[float]] = []

    def _weights(self) -> torch.Tensor:
        if len(self._history) < 2:
            return torch.ones(self.num_tasks)
        older, newer = (torch.tensor(h, dtype=torch.float64) for h in self._history)
        rates = newer / older
        return (self.num_tasks * torch.softmax(rates / self.options.temperature, 0)).float()

    def _backward(self, losses, parts, source):
        weights = self._weights()
        backward_weighted(losses, weights)
        values = torch.stack([loss.detach() for loss in losses]).double().cpu().tolist()
        self._sums = [s + v for s, v in zip(self._sums, values)]
        self._count += 1
        if self.options.window and self._count == self.options.window:
            self._roll()
        return StepInfo(weights.tolist(), "shared", "weighted")

    def end_round(self) -> None:
        if not self.options.window:
            self._roll()

    def _roll(self) -> None:
        if self._count:
            self._history = (self._history + [[s / self._count for s in self._sums]])[-2:]
        self._sums, self._count = [0.0] * self.num_tasks, 0

    def _extra_state(self):
        return {"sums": list(self._sums), "count": self._count, "history": [list(h) for h in self._history]}

    def _load_extra_state(self, state):
        self._sums = list(state["sums"])
        self._count = int(state["count"])
        self._history = [list(h) for h in state["history"]]
