"""Per-task resource use of a ResNet-26 (plain or partitioned): parameters and multiply-adds.

Counts follow the channels each task actually uses (its forward masks): a conv contributes
used_in x used_out x k^2 weights and that times its output positions in MACs. BatchNorm and head
parameters are the task's own. Reference at width 1, 72 px: 5,806,944 conv weights and about
1.079 G conv MACs per image (reference/original-system.md §6.3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TaskResources:
    """What one task's forward pass uses."""

    conv_params: int
    conv_macs: int
    bn_params: int
    head_params: int
    head_macs: int

    @property
    def params(self) -> int:
        return self.conv_params + self.bn_params + self.head_params

    @property
    def macs(self) -> int:
        return self.conv_macs + self.head_macs

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "params": self.params, "macs": self.macs}


def _size(input_size: int | tuple[int, int]) -> tuple[int, int]:
    return (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)


def task_resources(model: nn.Module, input_size: int | tuple[int, int] = 72) -> dict[str, TaskResources]:
    """Resources per task name.

    Args:
        model: a `ResNet26` or `PartitionedResNet26`.
        input_size: image side (or (H, W)) the MACs are counted at.

    Returns:
        {task name: TaskResources}.
    """
    out = {}
    for task in model.task_names:
        h, w = _size(input_size)
        conv_params = conv_macs = bn_params = 0
        for conv, rows, cols in model.conv_masks(task):
            h, w = math.ceil(h / conv.stride[0]), math.ceil(w / conv.stride[1])
            n = int(rows.sum()) * int(cols.sum()) * conv.kernel_size[0] * conv.kernel_size[1]
            conv_params, conv_macs = conv_params + n, conv_macs + n * h * w
            bn_params += 2 * int(rows.sum())
        feat, classes = model.final_usage(task), model.heads[task].out_features
        out[task] = TaskResources(conv_params, conv_macs, bn_params + 2 * feat,
                                  feat * classes + classes, feat * classes)
    return out


def network_conv_params(model: nn.Module) -> int:
    """Distinct conv weights used by at least one task (the multi-task model's shared size)."""
    used: dict[int, torch.Tensor] = {}
    for task in model.task_names:
        for conv, rows, cols in model.conv_masks(task):
            cell = rows[:, None] & cols[None, :]
            used[id(conv)] = used[id(conv)] | cell if id(conv) in used else cell
    k = {id(c): c.kernel_size[0] * c.kernel_size[1] for c, _, _ in model.conv_masks(model.task_names[0])}
    return sum(int(cell.sum()) * k[key] for key, cell in used.items())


def format_resources(resources: dict[str, TaskResources], reference: TaskResources | None = None) -> str:
    """A small table (one line per task) for the log; fractions are relative to `reference`."""
    lines = [f"{'task':<16}{'params':>12}{'conv MACs':>14}{'of full':>9}"]
    for task, r in resources.items():
        frac = f"{r.conv_macs / reference.conv_macs:8.1%}" if reference else ""
        lines.append(f"{task:<16}{r.params:>12,}{r.conv_macs:>14,} {frac}")
    return "\n".join(lines)
