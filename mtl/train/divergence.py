"""The divergence guard of the training loops: skip non-finite steps, stop after N in a row.

A step whose loss or gradient is not finite (an LR too high, an overflow) is skipped before the
optimizer or the method sees it, so weights, momentum buffers and method state (GradNorm weights,
FAMO logits, log-variances, rotations) stay as they were. After `patience` skipped steps in a row the
run stops with `Diverged`: status "diverged", exit 1, the last good checkpoint kept.

The forward pass has already moved the BatchNorm running statistics when the loss is seen, so they
are saved before it (`saved_buffers`) and put back on a skip.

Cost per step: one fused copy of the model's buffers (BatchNorm statistics: a few hundred KB at full
width), one fused non-finite check over the gradients (the kernel GradScaler uses) and one host read
of its result (the loops read the loss anyway).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class Diverged(Exception):
    """Raised by a training loop after `patience` non-finite steps in a row (exit 1, status diverged)."""


def all_finite(values: Sequence[Tensor], grads: Sequence[Tensor | None] = ()) -> Tensor:
    """A one-element device tensor: 1.0 when every value and gradient is finite, else 0.0 (no host sync)."""
    tensors = [v.detach().reshape(-1) for v in values]
    device = tensors[0].device if tensors else next(g for g in grads if g is not None).device
    found = torch.zeros(1, device=device)
    present = [g for g in grads if g is not None]
    if present:
        # Groups by device and dtype itself; with scale 1 it only sets `found` on inf / nan.
        torch._amp_foreach_non_finite_check_and_unscale_(present, found, torch.ones(1, device=device))
    if tensors:
        found = torch.maximum(found, (~torch.isfinite(torch.cat([t.float() for t in tensors]))).any().float())
    return 1.0 - found


def saved_buffers(model: torch.nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """(buffers, their copies) of `model` before a forward pass: the fused copy `restore_buffers` puts back."""
    buffers = [b for b in model.buffers() if b.dtype != torch.bool]  # masks never change in a forward
    return buffers, list(torch._foreach_mul(buffers, 1)) if buffers else []


def restore_buffers(saved: tuple[list[Tensor], list[Tensor]]) -> None:
    """Undo what a skipped step's forward pass did to the BatchNorm statistics."""
    if saved[0]:
        with torch.no_grad():
            torch._foreach_copy_(saved[0], saved[1])


class DivergenceGuard:
    """Counts skipped steps in a row; raises `Diverged` at `patience`, naming the step, tasks and cause."""

    def __init__(self, patience: int, lr_option: str = "--lr"):
        self.patience = patience
        self.lr_option = lr_option
        self.in_a_row = 0
        self.skipped = 0

    def record(self, ok: bool, step: int, tasks: Sequence[str], lr: float) -> bool:
        """Note one step (`ok`: its update was applied); returns `ok`. Raises Diverged at the limit."""
        if ok:
            self.in_a_row = 0
            return True
        self.in_a_row += 1
        self.skipped += 1
        if self.in_a_row >= self.patience:
            raise Diverged(
                f"training diverged: {self.in_a_row} steps in a row up to step {step} had a non-finite loss or "
                f"gradient (task {', '.join(tasks)}); each was skipped, so the weights are those of the last "
                f"finite step. The likely cause is the learning rate ({self.lr_option} {lr:g}): continue from "
                f"the last checkpoint with a smaller one (--continue {self.lr_option} ...)."
            )
        return False
