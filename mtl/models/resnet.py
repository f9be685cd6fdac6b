"""ResNet-26 of the Visual Decathlon literature, with per-task BatchNorm and heads.

Stem 3x3 conv (32) + BatchNorm (no ReLU, as the original and Rebuffi et al.), three stages of four basic blocks (64/128/256, first block of each stage
strided), parameter-free shortcuts (2x2 average pool + zero channel padding), bias-free convs,
He-normal init, per-task BatchNorm after every conv and before the heads, dropout before the
per-task linear heads (reference/original-system.md §3.5, §6.1). Per-task modules are keyed by task
name, so a single-task run's weights load into a multi-task model by name.
"""

from __future__ import annotations

import math
from typing import Any, ContextManager, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.models import channels as ch
from mtl.models.dropout import batch_dropout
from mtl.errors import UserError
from mtl.models.contract import Adapter, update_guard
from mtl.models.factory import MODELS, PARTITION_OPTIONS, task_specs

STEM_WIDTH = 32
# "original": every task's optimizer holds every task's BatchNorms; under last_third_only the final
# BatchNorms do not train (the original's parameter lists). "own": a task's optimizer holds only its
# own BatchNorms and the final BatchNorms always train (this project's earlier choice).
BN_SEMANTICS = ("original", "own")
STAGE_WIDTHS = (64, 128, 256)
BLOCKS_PER_STAGE = 4


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class TaskBatchNorm(nn.ModuleDict):
    """One BatchNorm2d per task, keyed by task name."""

    def __init__(self, num_channels: int, tasks: Sequence[str]):
        super().__init__({t: nn.BatchNorm2d(num_channels) for t in tasks})


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + shortcut, ReLU; BatchNorm per task."""

    def __init__(self, c_in: int, c_out: int, stride: int, tasks: Sequence[str]):
        super().__init__()
        self.stride, self.c_in, self.c_out = stride, c_in, c_out
        self.conv1, self.bn1 = _conv3x3(c_in, c_out, stride), TaskBatchNorm(c_out, tasks)
        self.conv2, self.bn2 = _conv3x3(c_out, c_out), TaskBatchNorm(c_out, tasks)

    def forward(self, x: Tensor, task: str, plan: ch.BlockPlan | None = None) -> Tensor:
        p = plan or ch.FULL_BLOCK
        h = F.relu(ch.batch_norm(ch.conv(x, self.conv1, p.x_in, p.mid), self.bn1[task], p.mid))
        h = ch.batch_norm(ch.conv(h, self.conv2, p.mid, p.out), self.bn2[task], p.out)
        return ch.mask(F.relu(h + ch.shortcut(x, self.stride, self.c_out, p)), p.out)


class ResNet26(nn.Module):
    """ResNet-26 with per-task BatchNorm and heads.

    Args:
        tasks: task specs (objects with `name` and `num_classes`, or (name, num_classes) pairs).
        width: width factor applied to every layer (1.0: 5,806,944 conv weights).
        dropout: dropout probability before the heads (the original's configs use 0.3).
        last_third_only: freeze the conv weights of the stem and all stages but the last (their
            BatchNorm parameters still train).
        stem_relu: a ReLU after the stem's BatchNorm (neither the original nor Rebuffi et al.'s
            ResNet-26 has one; kept as an option for runs trained with it).
        bn_semantics: which BatchNorm parameters train and in which task's optimizer, see BN_SEMANTICS.
    """

    def __init__(self, tasks: Sequence[Any], *, width: float = 1.0, dropout: float = 0.0,
                 last_third_only: bool = False, stem_relu: bool = False, bn_semantics: str = "original"):
        super().__init__()
        if bn_semantics not in BN_SEMANTICS:
            raise ValueError(f"unknown bn_semantics {bn_semantics!r} (choices: {', '.join(BN_SEMANTICS)})")
        specs = task_specs(tasks)
        self.task_names = [name for name, _ in specs]
        self.dropout, self.width, self.last_third_only = dropout, width, last_third_only
        self.stem_relu, self.bn_semantics = stem_relu, bn_semantics
        c = max(1, round(STEM_WIDTH * width))
        self.stem = _conv3x3(3, c)
        self.stem_bn = TaskBatchNorm(c, self.task_names)
        self.stages = nn.ModuleList()
        for w in STAGE_WIDTHS:
            c_out = max(1, round(w * width))
            blocks = [BasicBlock(c if i == 0 else c_out, c_out, 2 if i == 0 else 1, self.task_names)
                      for i in range(BLOCKS_PER_STAGE)]
            self.stages.append(nn.ModuleList(blocks))
            c = c_out
        self.num_features = c
        self.final_bn = TaskBatchNorm(c, self.task_names)
        self.heads = nn.ModuleDict({name: nn.Linear(c, k) for name, k in specs})
        self._init_weights()
        if last_third_only:
            for conv in [self.stem] + [m for s in self.stages[:-1] for m in s.modules()
                                       if isinstance(m, nn.Conv2d)]:
                conv.weight.requires_grad_(False)
            if bn_semantics == "original":
                # The original's last-third optimizers never list the final BatchNorms: their affine
                # parameters keep their initial (or loaded) values; running statistics still update.
                self.final_bn.requires_grad_(False)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He normal, std sqrt(2 / (k^2 C_out)) as in the original.
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] ** 2 * m.out_channels)))

    # --- tasks and parameters -----------------------------------------------------------------

    def task_name(self, task: str | int) -> str:
        """Name of a task given by name or index."""
        if isinstance(task, str):
            if task not in self.heads:
                raise KeyError(f"unknown task {task!r} (model tasks: {', '.join(self.task_names)})")
            return task
        return self.task_names[task]

    def task_parameters(self, task: str | int) -> list[nn.Parameter]:
        """Trainable parameters owned by one task (its BatchNorms and head)."""
        t = self.task_name(task)
        return [p for p in self._owned()[t] if p.requires_grad]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters every task uses (the convs not frozen)."""
        owned = {id(p) for ps in self._owned().values() for p in ps}
        return [p for p in self.parameters() if id(p) not in owned and p.requires_grad]

    def parameters_for(self, task: str | int) -> list[nn.Parameter]:
        """What a task's own optimizer steps: shared trainable parameters + the task's own.

        With bn_semantics "original" every task's trainable BatchNorms are in every task's optimizer
        (the original's per-task parameter lists): another task's BatchNorms get no gradient there,
        only that optimizer's weight decay and momentum (when gradients are zeroed, not set to None).
        """
        t = self.task_name(task)
        if self.bn_semantics == "own":
            return self.shared_parameters() + self.task_parameters(t)
        bns = [p for m in self.modules() if isinstance(m, TaskBatchNorm) for p in m.parameters() if p.requires_grad]
        return self.shared_parameters() + bns + [p for p in self.heads[t].parameters() if p.requires_grad]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last shared layer: the last conv of the last stage."""
        return [p for p in self.stages[-1][-1].conv2.parameters() if p.requires_grad]

    def update_masks(self, task: str | int) -> list[tuple[nn.Parameter, Tensor]]:
        """Every task may update every weight (partitioned models restrict this)."""
        return []

    def guard_update(self, *tasks: str | int) -> ContextManager[None]:
        """Around an optimizer step: restore the entries none of `tasks` may update (`update_guard`)."""
        return update_guard(self, tasks)

    def task_loss(self, task: str | int, loss: Tensor) -> Tensor:
        """A ResNet weighs no task's loss."""
        return loss

    @property
    def zero_grads_to_none(self) -> bool:
        """Whether a task's optimizer may drop gradients (False: the original's zeroed gradients, so
        other tasks' BatchNorms in its optimizer are decayed as in PyTorch 1.0)."""
        return self.bn_semantics == "own"

    def _owned(self) -> dict[str, list[nn.Parameter]]:
        owned: dict[str, list[nn.Parameter]] = {t: [] for t in self.task_names}
        for module in self.modules():
            if isinstance(module, TaskBatchNorm) or module is self.heads:
                for t, sub in module.items():
                    owned[t] += list(sub.parameters())
        return owned

    # --- execution ----------------------------------------------------------------------------

    def plan(self, task: str, mode: str | None = None) -> ch.NetPlan | None:
        """Channel selections for `task` (None: full width); partitioned models override this."""
        return None

    def forward(self, x: Tensor, task: str | int) -> Tensor:
        """Logits [B, num_classes(task)] for a batch of one task's images [B, 3, H, W]."""
        t = self.task_name(task)
        plan = self.plan(t)
        h = self._stages(self._stem(x, t, plan), t, plan, range(len(self.stages)))
        return self._logits(self._final(h, t, plan), t, plan)

    def _stages(self, h: Tensor, t: str, plan: ch.NetPlan | None, stages: range) -> Tensor:
        for s in stages:
            for b, block in enumerate(self.stages[s]):
                h = block(h, t, plan.blocks[s][b] if plan else None)
        return h

    def _stem(self, x: Tensor, t: str, plan: ch.NetPlan | None) -> Tensor:
        sel = plan.stem if plan else None
        h = ch.batch_norm(ch.conv(x, self.stem, None, sel), self.stem_bn[t], sel)
        return F.relu(h) if self.stem_relu else h

    def _final(self, h: Tensor, t: str, plan: ch.NetPlan | None) -> Tensor:
        sel = plan.final if plan else None
        return F.relu(ch.batch_norm(h, self.final_bn[t], sel))

    def _logits(self, h: Tensor, t: str, plan: ch.NetPlan | None) -> Tensor:
        sel = plan.final if plan else None
        feat = batch_dropout(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1), self.dropout, self.training)
        head = self.heads[t]
        if sel is not None and sel.idx is not None:
            return F.linear(feat, head.weight.index_select(1, sel.idx), head.bias)
        return head(feat)

    # --- hooks for distillation ---------------------------------------------------------------

    def last_stage_shape(self) -> tuple[int, int, int]:
        """(channels into the last stage, its channels, its blocks): what a distilled student's last
        stage must match."""
        last = self.stages[-1]
        return last[0].c_in, last[0].c_out, len(last)

    def trunk(self, x: Tensor, task: str | int) -> Tensor:
        """Full-width output of the stem and every stage but the last (the part `last_third_only`
        freezes); the input of `features`."""
        t = self.task_name(task)
        plan = self.plan(t)
        last = len(self.stages) - 1
        h = self._stages(self._stem(x, t, plan), t, plan, range(last))
        return ch.to_full(h, self._stage_input(plan, last))

    def features(self, h: Tensor, task: str | int) -> list[Tensor]:
        """Full-width outputs of each last-stage block, then the final BN+ReLU map, from a trunk
        output `h` (this model's or a teacher's). `head` turns the last entry into logits."""
        t = self.task_name(task)
        plan = self.plan(t)
        last = len(self.stages) - 1
        h = ch.from_full(h, self._stage_input(plan, last))
        outs = []
        for b, block in enumerate(self.stages[last]):
            bp = plan.blocks[last][b] if plan else None
            h = block(h, t, bp)
            outs.append(ch.to_full(h, bp.out if bp else None))
        sel = plan.final if plan else None
        outs.append(ch.to_full(self._final(h, t, plan), sel))
        return outs

    def head(self, final_map: Tensor, task: str | int) -> Tensor:
        """Logits from a full-width final map (pool, dropout, the task's linear head)."""
        return self._logits(final_map, self.task_name(task), None)

    def forward_with_representation(self, x: Tensor, task: str | int,
                                    adapter: Adapter | None = None) -> tuple[Tensor, list[Tensor]]:
        """Logits through trunk -> features -> (adapter) -> head, and the representation: the final
        full-width feature map (what the head reads)."""
        t = self.task_name(task)
        z = self.features(self.trunk(x, t), t)[-1]
        return self.head(z if adapter is None else adapter(z, self.task_names.index(t)), t), [z]

    def _stage_input(self, plan: ch.NetPlan | None, stage: int) -> ch.ChannelSel | None:
        """Selection of the tensor entering `stage` (the previous stage's or the stem's output)."""
        if plan is None:
            return None
        return plan.blocks[stage][0].x_in

    # --- channel use (resource accounting) ------------------------------------------------------

    def conv_masks(self, task: str | int) -> list[tuple[nn.Conv2d, Tensor, Tensor]]:
        """Each conv in execution order with bool masks of the output rows and input channels
        `task` uses (all True in a plain network)."""
        plan = self.plan(self.task_name(task), "masked")
        return [(conv, ch.kept(s_out, conv.out_channels, conv.weight.device),
                 ch.kept(s_in, conv.in_channels, conv.weight.device))
                for conv, s_in, s_out in self.conv_selections(plan)]

    def final_usage(self, task: str | int) -> int:
        """Channels of the final features `task` uses (the head's input)."""
        plan = self.plan(self.task_name(task))
        return ch.used_channels(plan.final if plan else None, self.num_features)

    def conv_selections(self, plan: ch.NetPlan | None):
        """(conv, input selection, output selection) for every conv in execution order."""
        yield self.stem, None, plan.stem if plan else None
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                p = plan.blocks[s][b] if plan else ch.FULL_BLOCK
                yield block.conv1, p.x_in, p.mid
                yield block.conv2, p.mid, p.out


@MODELS.register("resnet26")
def build_resnet26(tasks: Sequence[Any], *, width: float = 1.0, dropout: float = 0.0,
                   last_third_only: bool = False, stem_relu: bool = False, bn_semantics: str = "original",
                   partition: Any = None, **partition_opts: Any) -> ResNet26:
    """Plain ResNet-26 (every task uses every channel).

    Partition options other than `partition` are accepted and ignored, so one option set serves
    both models; a partition itself is an error (it would be silently unused).
    """
    if partition is not None:
        raise UserError(f"model resnet26 does not take a partition (got {partition!r}); "
                        "use --model partitioned_resnet26")
    unknown = set(partition_opts) - PARTITION_OPTIONS
    if unknown:
        raise TypeError(f"unknown resnet26 options: {sorted(unknown)}")
    return ResNet26(tasks, width=width, dropout=dropout, last_third_only=last_third_only, stem_relu=stem_relu,
                    bn_semantics=bn_semantics)
