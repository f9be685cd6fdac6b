"""mean: gradient averaging over tasks on the shared parameters (Hydra's 'Gradients averaging')."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import HEADS, METHODS, Method, StepInfo, check_choice
from mtl.methods.gramian import accumulate, backward_weighted


@dataclass
class MeanOptions:
    heads: str = field(default="unweighted", metadata={
        "help": "heads get their own task gradient ('unweighted', Hydra) or 1/K of it ('weighted')"})

    def __post_init__(self) -> None:
        check_choice("heads", self.heads, HEADS)


@METHODS.register("mean")
class Mean(Method):
    """Shared parameters get (1/K) sum_k g_k; heads get their own gradient (default) or 1/K of it.

    Hydra (hav4ik/Hydra): 'average out the gradients to the network's body', heads keep their
    task's gradient. With ``heads='weighted'`` this is backward of (1/K) sum_k L_k (TorchJD ``Mean``,
    mean convention). One backward pass either way.
    """

    Options = MeanOptions

    def _backward(self, losses, parts, source):
        k = self.num_tasks
        weights = torch.full((k,), 1.0 / k)
        if self.options.heads == "weighted":
            backward_weighted(losses, weights)
        else:
            shared, heads = list(parts.params), list(parts.task_params)
            grads = torch.autograd.grad(sum(losses), shared + heads, allow_unused=True)
            pairs = [(t, g) for t, g in zip(shared, grads[:len(shared)]) if g is not None]
            accumulate([t for t, _ in pairs], [g for _, g in pairs], 1.0 / k, owned=True)
            pairs = [(t, g) for t, g in zip(heads, grads[len(shared):]) if g is not None]
            accumulate([t for t, _ in pairs], [g for _, g in pairs], owned=True)
        return StepInfo(weights.tolist(), "shared", self.options.heads)
