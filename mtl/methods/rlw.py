"""rlw: Random Loss Weighting (Lin et al., "Reasonable Effectiveness of Random Weighting", TMLR 2022)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import METHODS, Method, StepInfo, generator_state, seeded_generator
from mtl.methods.gramian import backward_weighted


@dataclass
class RLWOptions:
    seed: int = field(default=0, metadata={"help": "seed of the method's own random generator"})


@METHODS.register("rlw")
class RLW(Method):
    """Each step, weights = softmax(z), z ~ N(0, I_K): positive, summing to 1 (mean-like scale).

    As LibMTL, nash-mtl and TorchJD ``Random``. One backward pass; heads weighted. The draws come
    from the method's own seeded CPU generator, whose state is checkpointed.
    """

    Options = RLWOptions

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self._generator = seeded_generator(self.options.seed)

    def _backward(self, losses, parts, source):
        weights = torch.softmax(torch.randn(self.num_tasks, generator=self._generator), 0)
        backward_weighted(losses, weights)
        return StepInfo(weights.tolist(), "shared", "weighted")

    def _extra_state(self):
        return {"generator": generator_state(self._generator)}

    def _load_extra_state(self, state):
        self._generator.set_state(state["generator"])
