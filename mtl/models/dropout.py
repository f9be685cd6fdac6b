"""Dropout whose masks are one process's under data-parallel training.

Each torchrun rank holds rows ``[rank * b, (rank + 1) * b)`` of the global batch and the same global
random generator (same seed, same draws so far). ``F.dropout`` on the slice would give every rank the
mask of the first b rows and advance the generators by b rows' draws, not B's. `batch_dropout` draws
the global batch's mask (B = b x world rows) on every rank and keeps this rank's rows: the mask one
process draws for the global batch (the same ``bernoulli_`` on a tensor of the global batch's shape),
and every rank's generator ends where one process's does. One process on CPU calls ``F.dropout``
itself (ATen's CPU dropout is that same ``bernoulli_``, ``div_``, multiply); on CUDA, where
``F.dropout`` is a fused kernel with other draws, one process takes the explicit path too, so N ranks
match it there as well.
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.nn import functional as F


def process_shard() -> tuple[int, int]:
    """(rank, world size) of this process's data-parallel group; (0, 1) without one."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank(), torch_dist.get_world_size()
    return 0, 1


def batch_dropout(x: Tensor, p: float, training: bool, shard: tuple[int, int] | None = None) -> Tensor:
    """``F.dropout(x, p, training)`` with `x` this process's rows of the global batch (`shard`: rank,
    world; default the process group's)."""
    rank, world = process_shard() if shard is None else shard
    if not training or p == 0 or x.numel() == 0 or (world == 1 and x.device.type == "cpu"):
        return F.dropout(x, p, training)
    if p == 1:
        return x * torch.zeros((), dtype=x.dtype, device=x.device)
    rows = x.shape[0]
    layout = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
    noise = torch.empty((rows * world, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=layout)
    noise.bernoulli_(1 - p)  # as ATen's CPU dropout: bernoulli_, div_, multiply
    return x * noise[rank * rows:(rank + 1) * rows].div_(1 - p)


class BatchDropout(nn.Dropout):
    """``nn.Dropout`` through `batch_dropout` (one process's masks under data-parallel training)."""

    def forward(self, x: Tensor) -> Tensor:
        return batch_dropout(x, self.p, self.training)
