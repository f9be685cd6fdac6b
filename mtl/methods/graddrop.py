"""graddrop: gradient sign dropout (Chen et al., "Just Pick a Sign", NeurIPS 2020)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import (METHODS, GradientOptions, Method, StepInfo, check_positive, generator_state,
                              seeded_generator)
from mtl.methods.gramian import apply_update, task_gradients


@dataclass
class GradDropOptions(GradientOptions):
    leak: float = field(default=0.0, metadata={"help": "fraction of every task gradient always kept (LibMTL 0)"})
    activation_sign: bool = field(default=True, metadata={
        "help": "representation source: purity from sign(z) * grad summed over the batch (paper, LibMTL)"})
    seed: int = field(default=0, metadata={"help": "seed of the dropout generator"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("leak", self.leak, allow_zero=True)


def graddrop_combine(per_task: torch.Tensor, signs_of: torch.Tensor, uniform: torch.Tensor,
                     leak: float) -> torch.Tensor:
    """sum_k (leak + (1 - leak) M_k) g_k with M_k = [P > U][s_k > 0] + [P < U][s_k < 0].

    Args:
        per_task: K x N task gradients g_k.
        signs_of: K x M values whose signs decide (M = N, or the batch-summed M = N / B).
        uniform: M uniform draws U.
        leak: the leak fraction.

    P = (1 + sum_k s_k / sum_k |s_k|) / 2 is the positive-sign purity of each unit.
    """
    purity = 0.5 * (1 + signs_of.sum(0) / signs_of.abs().sum(0).clamp_min(1e-12))
    keep = ((purity > uniform) & (signs_of > 0)) | ((purity < uniform) & (signs_of < 0))
    mask = leak + (1 - leak) * keep.to(per_task.dtype)
    reps = per_task.shape[1] // mask.shape[1]
    return (per_task * mask.repeat(1, reps)).sum(0)


@METHODS.register("graddrop")
class GradDrop(Method):
    """Per unit of the gradient source, keep only the positive or only the negative task gradients.

    Chen et al., NeurIPS 2020, Algorithm 1: the sign is drawn per unit with probability P (the
    positive-sign purity). On the representation (the paper's setting) the purity uses
    sign(z) * grad summed over the batch (``activation_sign``), one draw per feature shared by the
    batch; on parameters it works elementwise (TorchJD ``GradDrop``). Sum convention (weights 1),
    heads unweighted. Draws come from the method's seeded CPU generator (checkpointed).
    """

    Options = GradDropOptions
    sources = ("shared", "representation")
    # Data-parallel on the representation (``grads.reducer``: each rank holds its rows): the batch sums
    # of sign(z) * grad are all-reduced (one K x features sum), so purity and draws are the global
    # batch's; elementwise (no activation_sign) every rank draws the global batch's uniforms and keeps
    # its rows' slice. Purity and signs do not depend on the rows' common scale.

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self._generator = seeded_generator(self.options.seed)

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        pieces, offset = [], 0
        for t in grads.inputs:
            block = grads.jacobian[:, offset:offset + t.numel()]
            offset += t.numel()
            pieces.append(self._combine(block, t, source == "representation", grads.reducer))
        combined = torch.cat(pieces)
        ones = torch.ones(self.num_tasks)
        apply_update(losses, parts, grads, None, ones, combined=combined)
        return StepInfo(ones.tolist(), source, "unweighted")

    def _combine(self, block: torch.Tensor, tensor: torch.Tensor, activations: bool, reducer=None) -> torch.Tensor:
        """`reducer`: data-parallel representation rows (this rank's slice of the global batch)."""
        world, rank = (reducer.world_size, reducer.rank) if reducer is not None else (1, 0)
        if activations and self.options.activation_sign and tensor.dim() > 1:
            batch = tensor.shape[0]
            signed = block * tensor.detach().sign().reshape(1, -1).to(block.dtype)
            signs_of = signed.reshape(block.shape[0], batch, -1).sum(1)
            if reducer is not None:
                reducer.sum_([signs_of])  # the global batch's sums
            draws, first = signs_of.shape[1], 0
        else:
            signs_of = block
            draws, first = signs_of.shape[1] * world, signs_of.shape[1] * rank  # this rank's rows' draws
        uniform = torch.rand(draws, generator=self._generator, dtype=torch.float64)[first:first + signs_of.shape[1]]
        uniform = uniform.to(device=block.device, dtype=block.dtype)
        return graddrop_combine(block, signs_of, uniform, self.options.leak)

    def _extra_state(self):
        return {"generator": generator_state(self._generator)}

    def _load_extra_state(self, state):
        self._generator.set_state(state["generator"])
