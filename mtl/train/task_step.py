"""One task's training step (`train_step`: the naive regime of mtl/train/method_step.py NaiveSteps)
and the precision helpers every step and the evaluation use (`autocast`, `precision`, `grad_scaler`)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mtl.train.distributed import SINGLE, Dist
from mtl.train.divergence import all_finite, restore_buffers, saved_buffers
from mtl.train.metrics import correct_count


def autocast(device: torch.device, enabled: bool | torch.dtype):
    """Autocast for the forward pass.

    True: bf16 on CUDA, a no-op context on CPU (CPU runs stay in float32); a dtype (from
    `precision`): autocast in that dtype on any device; False: none.
    """
    if isinstance(enabled, torch.dtype):
        return torch.autocast(device.type, dtype=enabled)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision(opts: Any, device: torch.device) -> bool | torch.dtype:
    """What `autocast` gets in a training run: False (float32) or the autocast dtype.

    --amp autocasts on CUDA (bf16, or fp16 with --amp_dtype fp16); on CPU only with --amp_cpu.
    Weights, optimizer state, losses and the methods' Gramians and solvers stay float32 or wider.
    """
    if not opts.amp or (device.type != "cuda" and not opts.amp_cpu):
        return False
    return torch.float16 if opts.amp_dtype == "fp16" else torch.bfloat16


def grad_scaler(amp: bool | torch.dtype, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs a loss scale (its gradients underflow); bf16 and float32 do not."""
    return torch.amp.GradScaler(device.type) if amp is torch.float16 else None


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, task: str, images: torch.Tensor,
               labels: torch.Tensor, *, amp: bool, set_to_none: bool = True,
               clip_grad: float = 0.0, dist: Dist = SINGLE,
               scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One step of one task: forward, loss, backward, that task's optimizer step.

    `set_to_none` False zeroes gradients instead of dropping them, so parameters in the optimizer that
    the task does not use are still decayed (the original's behaviour, see ResNet26.parameters_for).
    A non-finite loss or gradient skips the optimizer step (mtl/train/divergence.py).
    `clip_grad` > 0 clips the gradient norm over the optimizer's parameters before the step, as the
    original's --clip_grad (it clipped before applying its backward masks; here they are already in
    the gradient). Data-parallel (`dist`): the gradient, loss and accuracy are the global batch's.
    fp16 (`scaler`): the loss is scaled for the backward and the gradients unscaled before the checks; an
    overflow (finite loss, non-finite gradient) skips the update and lowers the scale, as GradScaler does,
    and is not counted as a divergence.

    Returns:
        loss and accuracy of the batch (floats, synchronised) and "finite" (whether it stepped).
    """
    model.train()
    buffers = saved_buffers(model)
    with autocast(images.device, amp):
        logits = model(images, task)
    loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=set_to_none)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
    dist.average_(grads)
    if scaler is not None:
        scaler.unscale_(optimizer)
    value, correct = _global_stats(dist, loss.detach(), correct_count(logits.detach(), labels))
    finite = bool(all_finite([value], grads))
    overflow = scaler is not None and not finite and bool(torch.isfinite(value))
    if finite:
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad)
        # Partitioned models undo updates a task may not make (backward masks, weight decay, momentum).
        with model.guard_update(task):
            optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=set_to_none)
        restore_buffers(buffers)
    if scaler is not None:
        scaler.update()
    return {"loss": float(value), "accuracy": correct / (len(labels) * dist.world_size),
            "finite": finite or overflow}


def _global_stats(dist: Dist, loss: torch.Tensor, correct: int) -> tuple[torch.Tensor, int]:
    """The global batch's mean loss and correct count (local ones on one rank)."""
    if not dist.active:
        return loss, correct
    totals = torch.tensor([float(loss), float(correct)], dtype=torch.float64)
    dist.sum_([totals])
    return (totals[0] / dist.world_size).to(loss.dtype), int(totals[1])
