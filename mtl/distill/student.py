"""P partitioned students stacked along a candidate axis, so one kernel launch serves them all.

A student is the last stage of a ResNet-26 (its blocks' convs shared by the tasks, one BatchNorm per
task and conv) with a partition applied as `PartitionedResNet26(layers=...)` does in masked mode:
    last_stage_conv1 (the original's): each block's first conv output is masked per task after its
        BatchNorm; a task's update changes only the rows of that conv in its backward mask and the
        columns of the second conv it uses;
    last_stage: also the second conv's output and the residual stream (block outputs) are masked, and
        updates are limited to the rows / columns of the task's channels everywhere.
Masks are sampled with the same seeds as the partitioned model, so proxy and full training see the
same masks for a partition file. Execution (`stack`):
    grouped  candidates' channels side by side ([B, P*C, h, w]); grouped convolutions (groups=P);
    vmap     torch.func.vmap of the one-candidate function over stacked weights.
Both compute the same function; benchmarks/proxy_throughput.py measures which is faster.
With `final_bn` (the original's proxy) the last block's output goes through the student's own per-task
final BatchNorm and ReLU; like the original's (its last-third optimizers never list it) that BatchNorm
does not train: its affine parameters stay at their initial values, its running statistics update.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtl.errors import UserError
from mtl.meta.partition import Partition, layer_masks
from mtl.util.checkpoint import CheckpointStore

STACK_MODES = ("grouped", "vmap")
LAYOUTS = ("last_stage_conv1", "last_stage")
BN_MOMENTUM, BN_EPS = 0.1, 1e-5


def partition_masks(partition: Partition, channels: int, blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) bool masks [blocks, N, C] of the last stage, as PartitionedResNet26 samples them."""
    fwd, bwd = [], []
    for b in range(blocks):
        u = b if partition.num_unique > 1 else 0
        forward, backward = layer_masks(partition, u, channels)
        fwd.append(forward)
        bwd.append(backward)
    if partition.num_unique not in (1, blocks):
        raise UserError(f"partition has U={partition.num_unique}; the proxy's last stage needs 1 or {blocks}")
    return np.stack(fwd), np.stack(bwd)


class StackedStudent:
    """The last stages of P candidate networks, each with its own partition and initial weights.

    Args:
        num_tasks: N (task indices 0..N-1, the proxy's task order).
        partitions: one per candidate (N tasks each).
        seeds: one per candidate: the initial weights (He normal) unless `init` is given.
        c_in, channels, blocks: trunk output channels, last-stage width, blocks in the last stage.
        device: where the weights live.
        init: optional weights every candidate starts from (see `load_student_init`).
        stack: "grouped" or "vmap" (see the module docstring).
        layers: "last_stage_conv1" or "last_stage" (see the module docstring).
        final_bn: apply the student's own final BatchNorm + ReLU to the last block's output.
    """

    def __init__(self, num_tasks: int, partitions: Sequence[Partition], seeds: Sequence[int], *, c_in: int,
                 channels: int, blocks: int = 4, device: torch.device | str = "cpu", init: dict | None = None,
                 stack: str = "grouped", layers: str = "last_stage_conv1", final_bn: bool = False):
        if stack not in STACK_MODES or layers not in LAYOUTS:
            raise ValueError(f"stack must be one of {STACK_MODES} and layers one of {LAYOUTS} "
                             f"(got {stack!r}, {layers!r})")
        self.outer = layers == "last_stage"  # the residual stream is partitioned too
        self.num_tasks, self.size = num_tasks, len(partitions)
        self.c_in, self.channels, self.blocks = c_in, channels, blocks
        self.partitions, self.seeds, self.stack = list(partitions), list(seeds), stack
        self.device = torch.device(device)
        self.conv1, self.conv2 = self._init_convs(init)
        self.bn = [self._init_bn(init) for _ in range(num_tasks)]  # per task: [weight, bias, mean, var] per conv
        self.final_bn = final_bn
        self.end_bn = [self._init_end_bn(init) for _ in range(num_tasks)]  # per task: weight, bias, mean, var
        self._init_masks()

    # --- construction ----------------------------------------------------------------------------

    def _init_convs(self, init: dict | None) -> tuple[list[Tensor], list[Tensor]]:
        c, p = self.channels, self.size
        if init is not None:
            conv1, conv2 = ([w.expand(p, *w.shape).clone() for w in init[name]] for name in ("conv1", "conv2"))
        else:
            std = math.sqrt(2.0 / (9 * c))  # He normal, as ResNet26
            drawn = []  # per candidate: conv1, conv2 of block 0, then of block 1, ...
            for seed in self.seeds:
                g = torch.Generator().manual_seed(int(seed))
                drawn.append([torch.randn(shape, generator=g) * std for b in range(self.blocks)
                              for shape in ((c, self.c_in if b == 0 else c, 3, 3), (c, c, 3, 3))])
            conv1 = [torch.stack([ws[2 * b] for ws in drawn]) for b in range(self.blocks)]
            conv2 = [torch.stack([ws[2 * b + 1] for ws in drawn]) for b in range(self.blocks)]
        return ([w.to(self.device).requires_grad_(True) for w in conv1],
                [w.to(self.device).requires_grad_(True) for w in conv2])

    def _init_bn(self, init: dict | None) -> list[list[Tensor]]:
        c, p = self.channels, self.size
        out = []
        for k in range(2 * self.blocks):
            if init is not None:
                values = [v.expand(p, c).clone() for v in init["bn"][k]]
            else:
                values = [torch.ones(p, c), torch.zeros(p, c), torch.zeros(p, c), torch.ones(p, c)]
            weight, bias, mean, var = (v.to(self.device) for v in values)
            out.append([weight.requires_grad_(True), bias.requires_grad_(True), mean, var])
        return out

    def _init_end_bn(self, init: dict | None) -> list[Tensor]:
        c, p = self.channels, self.size
        if init is not None and "final_bn" in init:
            values = [v.expand(p, c).clone() for v in init["final_bn"]]
        else:
            values = [torch.ones(p, c), torch.zeros(p, c), torch.zeros(p, c), torch.ones(p, c)]
        return [v.to(self.device) for v in values]  # never trained (see the module docstring)

    def _init_masks(self) -> None:
        masks = [partition_masks(part, self.channels, self.blocks) for part in self.partitions]
        fwd = torch.from_numpy(np.stack([m[0] for m in masks])).to(self.device)  # [P, blocks, N, C]
        bwd = torch.from_numpy(np.stack([m[1] for m in masks])).to(self.device)
        self.fwd = fwd.permute(1, 2, 0, 3).float().contiguous()  # [blocks, N, P, C]
        rows = bwd.float().view(*bwd.shape, 1, 1, 1)  # [P, blocks, N, C, 1, 1, 1]
        cols = fwd.float().view(*fwd.shape[:3], 1, -1, 1, 1)  # [P, blocks, N, 1, C, 1, 1]
        # Entries a task may change: conv1 rows in its backward mask (and, with the stream partitioned,
        # columns in the previous block's forward mask); conv2 columns in its forward mask (and rows in
        # its backward mask when the stream is partitioned).
        self.keep1 = [[rows[:, b, t] * (cols[:, b - 1, t] if self.outer and b else 1.0) for t in range(self.num_tasks)]
                      for b in range(self.blocks)]
        self.keep2 = [[cols[:, b, t] * (rows[:, b, t] if self.outer else 1.0) for t in range(self.num_tasks)]
                      for b in range(self.blocks)]

    # --- parameters and state --------------------------------------------------------------------

    def shared_parameters(self) -> list[Tensor]:
        return [*self.conv1, *self.conv2]

    def task_parameters(self, t: int) -> list[Tensor]:
        return [x for conv in self.bn[t] for x in conv[:2]]

    def update_masks(self, t: int) -> list[Tensor]:
        """Per shared parameter (same order), the float mask of the entries task t may change."""
        return [self.keep1[b][t] for b in range(self.blocks)] + [self.keep2[b][t] for b in range(self.blocks)]

    def final_mask(self, t: int) -> Tensor | None:
        """[P, C] float mask of the final features task t uses (None: all channels)."""
        return self.fwd[-1, t] if self.outer else None

    def state_dict(self) -> dict:
        return {"conv1": [w.detach().clone() for w in self.conv1], "conv2": [w.detach().clone() for w in self.conv2],
                "bn": [[x.detach().clone() for x in conv] for task in self.bn for conv in task],
                "final_bn": [[x.clone() for x in task] for task in self.end_bn]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for own, saved in zip(self.conv1 + self.conv2, state["conv1"] + state["conv2"]):
                own.copy_(saved)
            flat = [conv for task in self.bn for conv in task]
            for own, saved in zip(flat, state["bn"]):
                for x, y in zip(own, saved):
                    x.copy_(y)
            for own, saved in zip(self.end_bn, state.get("final_bn", [])):  # absent in older checkpoints
                for x, y in zip(own, saved):
                    x.copy_(y)

    # --- execution -------------------------------------------------------------------------------

    def forward(self, x: Tensor, t: int, train: bool) -> list[Tensor]:
        """Block outputs [B, P, C, h, w] of every candidate for task t's trunk features x [B, C_in, H, W]
        (with `final_bn` the last one after the student's final BatchNorm + ReLU)."""
        outs = self._forward_vmap(x, t, train) if self.stack == "vmap" else self._forward_grouped(x, t, train)
        if self.final_bn:
            outs[-1] = self._end(outs[-1], t, train)
        return outs

    def _end(self, y: Tensor, t: int, train: bool) -> Tensor:
        """The final BatchNorm + ReLU of task t on last-block outputs [B, P, C, h, w] (masked as the
        partitioned model masks its final features when the residual stream is partitioned)."""
        b, p, c = y.shape[0], self.size, self.channels
        weight, bias, mean, var = self.end_bn[t]
        n = p * c
        h = F.relu(F.batch_norm(y.reshape(b, n, *y.shape[3:]), mean.view(n), var.view(n), weight.view(n),
                                bias.view(n), train, BN_MOMENTUM, BN_EPS))
        if self.outer:
            h = h * self.fwd[-1, t].view(1, n, 1, 1)
        return h.view(b, p, c, *y.shape[3:])

    def _forward_grouped(self, x: Tensor, t: int, train: bool) -> list[Tensor]:
        p, c = self.size, self.channels
        outs, y = [], x
        for b in range(self.blocks):
            if b == 0:
                h = F.conv2d(x, self.conv1[0].reshape(p * c, self.c_in, 3, 3), stride=2, padding=1)
                shortcut = _shortcut(x, c).repeat(1, p, 1, 1)
            else:
                h = F.conv2d(y, self.conv1[b].reshape(p * c, c, 3, 3), padding=1, groups=p)
                shortcut = y
            h = self._bn(h, t, 2 * b, train) * self.fwd[b, t].view(1, p * c, 1, 1)
            h = F.conv2d(F.relu(h), self.conv2[b].reshape(p * c, c, 3, 3), padding=1, groups=p)
            y = F.relu(self._bn(h, t, 2 * b + 1, train) + shortcut)
            if self.outer:
                y = y * self.fwd[b, t].view(1, p * c, 1, 1)
            outs.append(y)
        return [o.view(o.shape[0], p, c, *o.shape[2:]) for o in outs]

    def _bn(self, h: Tensor, t: int, k: int, train: bool) -> Tensor:
        weight, bias, mean, var = self.bn[t][k]
        n = self.size * self.channels
        return F.batch_norm(h, mean.view(n), var.view(n), weight.view(n), bias.view(n), train, BN_MOMENTUM, BN_EPS)

    def _forward_vmap(self, x: Tensor, t: int, train: bool) -> list[Tensor]:
        bn = [list(z) for z in zip(*self.bn[t])]  # weight, bias, mean, var: lists over convs of [P, C]
        fwd = [self.fwd[b, t] for b in range(self.blocks)]
        one = torch.func.vmap(lambda c1, c2, w, bi, m, v, f: _one_candidate(x, c1, c2, w, bi, m, v, f, train,
                                                                            self.outer),
                              in_dims=0, randomness="error")
        outs = one(self.conv1, self.conv2, *bn, fwd)
        return [o.transpose(0, 1) for o in outs]


def _one_candidate(x: Tensor, conv1: list[Tensor], conv2: list[Tensor], weight: list[Tensor], bias: list[Tensor],
                   mean: list[Tensor], var: list[Tensor], fwd: list[Tensor], train: bool,
                   outer: bool) -> list[Tensor]:
    """One candidate's last stage (plain convolutions); vmapped over candidates."""
    outs, y = [], x
    for b in range(len(conv1)):
        k = 2 * b
        h = F.conv2d(y, conv1[b], stride=2 if b == 0 else 1, padding=1)
        shortcut = _shortcut(y, conv1[b].shape[0]) if b == 0 else y
        h = F.batch_norm(h, mean[k], var[k], weight[k], bias[k], train, BN_MOMENTUM, BN_EPS) * fwd[b].view(1, -1, 1, 1)
        h = F.conv2d(F.relu(h), conv2[b], padding=1)
        h = F.batch_norm(h, mean[k + 1], var[k + 1], weight[k + 1], bias[k + 1], train, BN_MOMENTUM, BN_EPS)
        y = F.relu(h + shortcut)
        if outer:
            y = y * fwd[b].view(1, -1, 1, 1)
        outs.append(y)
    return outs


def _shortcut(x: Tensor, channels: int) -> Tensor:
    """ResNet-26's strided shortcut: 2x2 average pool, zero channel padding (as mtl.models.channels)."""
    x = F.avg_pool2d(x, 2, ceil_mode=True)
    return F.pad(x, (0, 0, 0, 0, 0, channels - x.shape[1])) if x.shape[1] < channels else x


def distill_loss(outs: list[Tensor], targets: list[Tensor]) -> Tensor:
    """Per-candidate MSE [P] over the concatenated block outputs (all blocks have the same size)."""
    per_block = [(o - t.unsqueeze(1)).pow(2).mean(dim=(0, 2, 3, 4)) for o, t in zip(outs, targets)]
    return torch.stack(per_block).mean(0)


def load_student_init(run: str | Path, blocks: int = 4) -> dict:
    """Last-stage weights of a train run's ResNet-26 (its first task's BatchNorms), for `init`.

    The original initialised the student from the ImageNet model; pass that run here.
    """
    store = CheckpointStore(Path(run) / "checkpoints")
    loaded = store.load_best() or store.load_latest()
    if loaded is None:
        raise UserError(f"--student_init {run}: no usable checkpoint.")
    weights = loaded[1]["model"]
    last = max(int(k.split(".")[1]) for k in weights if k.startswith("stages."))
    task = next(k.split(".")[4] for k in weights if k.startswith(f"stages.{last}.0.bn1."))
    prefix = f"stages.{last}"
    names = ("weight", "bias", "running_mean", "running_var")
    bn = [[weights[f"{prefix}.{b}.bn{j}.{task}.{n}"].float() for n in names] for b in range(blocks) for j in (1, 2)]
    return {"conv1": [weights[f"{prefix}.{b}.conv1.weight"].float() for b in range(blocks)],
            "conv2": [weights[f"{prefix}.{b}.conv2.weight"].float() for b in range(blocks)], "bn": bn,
            "final_bn": [weights[f"final_bn.{task}.{n}"].float() for n in names]}
