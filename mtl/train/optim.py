"""Optimizers and the learning-rate schedule of the training jobs.

The learning rate is a pure function of the global step (`lr_at`), set on every optimizer before
each step, so a resumed run follows the same schedule without any schedule state (the original
edited its options in place and lost drops on resume).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn


def lr_at(step: int, base_lr: float, drop_steps: Sequence[int], drop_factor: float) -> float:
    """Base LR divided by `drop_factor` once for every drop step already passed (step >= drop)."""
    drops = sum(1 for d in drop_steps if step >= d)
    return base_lr / (drop_factor ** drops)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_sgd(params: Iterable[nn.Parameter], lr: float, momentum: float, weight_decay: float,
             nesterov: bool) -> torch.optim.SGD:
    """SGD over the parameters that require gradients (frozen ones are left out)."""
    trainable = [p for p in params if p.requires_grad]
    return torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov and momentum > 0)
