"""Partitioned ResNet-26: each task uses (forward) and updates (backward) its own channel masks.

Which layers are partitioned (`layers`):
    last_stage_conv1  the first conv of every block of the last stage (the original system's choice
                      with last_third_only);
    all_stages_conv1  the first conv of every block of every stage (the original's choice without
                      last_third_only; its stem is never masked);
    last_stage        every conv of the last stage, and the residual stream inside it;
    all               every conv of the network, the residual stream and the head input.
One partition (U = 1) serves every partitioned block, with masks sampled once per channel width;
a partition with U = number of partitioned blocks gives each block its own.

Masks are applied *after* the task's BatchNorm (the original masked before it, so masked channels
carried the BN bias). Masked channels are then exactly zero, which makes the two execution modes
(`exec_mode`: "masked" full width, "sliced" task channels only) compute the same outputs and
gradients. Masks live in state_dict buffers, so checkpoints carry them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mtl.meta.masks import mask_set
from mtl.meta.partition import SHARE_AMT, Partition, layer_masks, resolve_partition, to_json_dict
from mtl.models import channels as ch
from mtl.models.factory import MODELS, task_specs
from mtl.models.resnet import ResNet26

LAYOUTS = ("last_stage_conv1", "all_stages_conv1", "last_stage", "all")
CONV1_ONLY = ("last_stage_conv1", "all_stages_conv1")  # the block input and output stay full width
ALL_STAGES = ("all_stages_conv1", "all")
EXEC_MODES = ("sliced", "masked")


class PartitionedResNet26(ResNet26):
    """ResNet-26 whose partitioned convs give each task only its channels.

    Args:
        tasks: task specs (see `ResNet26`).
        partition: the partition; its task count must match.
        layers: one of LAYOUTS.
        exec_mode: "sliced" (compute only the task's channels) or "masked" (full width, zeroed).
        **resnet_opts: width, dropout, last_third_only.
    """

    def __init__(self, tasks: Sequence[Any], partition: Partition, *, layers: str = "last_stage_conv1",
                 exec_mode: str = "sliced", **resnet_opts: Any):
        super().__init__(tasks, **resnet_opts)
        if layers not in LAYOUTS:
            raise ValueError(f"unknown partition layers {layers!r} (choices: {', '.join(LAYOUTS)})")
        self.layers = layers
        self.exec_mode = exec_mode
        self._plans: dict[tuple, Any] = {}  # (task, mode or "update", device) -> plan or update masks
        self.register_load_state_dict_post_hook(_rebuild_plans)
        self.set_partition(partition)

    @property
    def exec_mode(self) -> str:
        return self._exec_mode

    @exec_mode.setter
    def exec_mode(self, mode: str) -> None:
        if mode not in EXEC_MODES:
            raise ValueError(f"unknown exec_mode {mode!r} (choices: {', '.join(EXEC_MODES)})")
        self._exec_mode = mode
        self._build_plans()

    # --- partition and masks --------------------------------------------------------------------

    def set_partition(self, partition: Partition) -> None:
        """Sample masks for `partition` (seeded by partition.seed) and store them as buffers."""
        if partition.num_tasks != len(self.task_names):
            raise ValueError(f"partition has {partition.num_tasks} tasks, model has {len(self.task_names)}")
        if partition.tasks is not None and list(partition.tasks) != self.task_names:
            raise ValueError(f"partition tasks {partition.tasks} != model tasks {self.task_names}")
        groups = len(self._partitioned_blocks())
        if partition.num_unique not in (1, groups):
            raise ValueError(f"partition has U={partition.num_unique}; "
                             f"layers={self.layers!r} needs 1 or {groups}")
        device = self.stem.weight.device
        for name in [n for n in self._buffers if n.startswith("masks_")]:
            del self._buffers[name]
        self.register_buffer("partition_raw", torch.tensor(partition.raw, dtype=torch.float64, device=device))
        self.register_buffer("partition_seed", torch.tensor(int(partition.seed), device=device))
        self._preset, self._preset_info = partition.preset, dict(partition.info)
        for u, c in self._sites(partition.num_unique):
            stacked = torch.from_numpy(np.stack(layer_masks(partition, u, c)))
            self.register_buffer(f"masks_u{u}_c{c}", stacked.to(device))
        self._plans.clear()
        self._build_plans()

    @property
    def partition(self) -> Partition:
        """The partition the stored masks were sampled from."""
        return Partition(self.partition_raw.detach().cpu().numpy(), tasks=list(self.task_names),
                         seed=int(self.partition_seed), preset=self._preset, info=dict(self._preset_info))

    def masks(self, unique: int = 0, channels: int | None = None) -> tuple[Tensor, Tensor]:
        """(forward, backward) bool [N, C] masks of one site (default: the widest partitioned)."""
        c = channels or max(c for u, c in self._sites(self.partition_raw.shape[0]) if u == unique)
        m = getattr(self, f"masks_u{unique}_c{c}")
        return m[0], m[1]

    def mask_report(self) -> dict[str, dict]:
        """Per site ("u0_c256"): achieved vs target overlaps and their errors in channels."""
        part, out = self.partition, {}
        for u, c in self._sites(part.num_unique):
            fwd, bwd = part.fractions(u)
            m = getattr(self, f"masks_u{u}_c{c}").cpu().numpy()
            out[f"u{u}_c{c}"] = mask_set(fwd, bwd, m[0], m[1]).report()
        return out

    def partition_state(self) -> dict:
        """JSON-able record: the partition (search-file format), layers, mode, mask report."""
        part = self.partition
        return {
            "partition": to_json_dict(part),
            "layers": self.layers,
            "exec_mode": self.exec_mode,
            "channel_use": dict(zip(self.task_names, np.round(part.channel_use(), 4).tolist())),
            "masks": self.mask_report(),
        }

    def _partitioned_blocks(self) -> list[tuple[int, int]]:
        stages = range(len(self.stages)) if self.layers in ALL_STAGES else [len(self.stages) - 1]
        return [(s, b) for s in stages for b in range(len(self.stages[s]))]

    def _sites(self, num_unique: int) -> list[tuple[int, int]]:
        """Distinct (unique index, channel count) pairs that need masks."""
        keys = [(k if num_unique > 1 else 0, self.stages[s][b].c_out)
                for k, (s, b) in enumerate(self._partitioned_blocks())]
        if self.layers == "all":
            keys.append((0, self.stem.out_channels))
        return sorted(set(keys))

    # --- plans ----------------------------------------------------------------------------------

    def _build_plans(self) -> None:
        """Build every task's plan for the current mode now, so forward only looks them up
        (plan building syncs with the device and would break a torch.compile graph)."""
        if "_plans" in self.__dict__ and "partition_raw" in self._buffers:
            for task in self.task_names:
                self.plan(task)

    def plan(self, task: str, mode: str | None = None) -> ch.NetPlan:
        """Cached channel selections of `task` for `mode` (default: the current exec_mode)."""
        mode = mode or self._exec_mode
        key = (task, mode, self.partition_raw.device)
        if key not in self._plans:
            self._plans[key] = self._build_plan(self.task_names.index(task), mode)
        return self._plans[key]

    def _build_plan(self, i: int, mode: str) -> ch.NetPlan:
        unique = self.partition_raw.shape[0]
        outer = self.layers not in CONV1_ONLY
        blocks = [[ch.FULL_BLOCK] * len(stage) for stage in self.stages]
        stem = self._sel(i, 0, self.stem.out_channels, mode) if self.layers == "all" else None
        prev = stem
        for k, (s, b) in enumerate(self._partitioned_blocks()):
            block = self.stages[s][b]
            sel = self._sel(i, k if unique > 1 else 0, block.c_out, mode)
            x_in, out = (prev, sel) if outer else (None, None)
            sliced_out = out is not None and out.idx is not None
            gather = ch.shortcut_gather(x_in, block.c_in, out) if sliced_out else None
            blocks[s][b] = ch.BlockPlan(x_in, sel, out, gather)
            prev = out
        return ch.NetPlan(stem, tuple(tuple(bs) for bs in blocks), prev if outer else None)

    def _sel(self, i: int, u: int, c: int, mode: str) -> ch.ChannelSel | None:
        m = getattr(self, f"masks_u{u}_c{c}")
        fwd, bwd = m[0, i], m[1, i]
        full, restricted = bool(fwd.all()), bool((fwd & ~bwd).any())
        if full and not restricted:
            return None
        if mode == "masked" or full:
            drop = None if full else (~fwd).view(1, c, 1, 1)
            return ch.ChannelSel(c, drop=drop, grad_rows=bwd.view(c, 1, 1, 1) if restricted else None)
        idx = fwd.nonzero().squeeze(1)
        rows = bwd.index_select(0, idx).view(-1, 1, 1, 1)
        return ch.ChannelSel(c, idx=idx, grad_rows=rows if restricted else None)

    def _apply(self, fn, *args, **kwargs):
        self._plans.clear()  # cached index tensors live on the old device
        out = super()._apply(fn, *args, **kwargs)
        self._build_plans()
        return out

    # --- restricted updates ---------------------------------------------------------------------

    def update_masks(self, task: str | int) -> list[tuple[nn.Parameter, Tensor]]:
        """Partitioned conv weights with the entries a task may change (broadcastable bool masks):
        rows in its backward mask, columns in the forward mask of its input."""
        t = self.task_name(task)
        key = (t, "update", self.partition_raw.device)
        if key not in self._plans:
            self._plans[key] = self._build_update_masks(self.plan(t, "masked"))
        return self._plans[key]

    def _build_update_masks(self, plan: ch.NetPlan) -> list[tuple[nn.Parameter, Tensor]]:
        out = []
        for conv, s_in, s_out in self.conv_selections(plan):
            if s_in is None and s_out is None:
                continue
            dev = conv.weight.device
            keep = torch.ones(conv.out_channels, conv.in_channels, 1, 1, dtype=torch.bool, device=dev)
            if s_out is not None:
                rows = s_out.grad_rows if s_out.grad_rows is not None else ch.kept(s_out, conv.out_channels, dev)
                keep &= rows.view(-1, 1, 1, 1)
            if s_in is not None:
                keep &= ch.kept(s_in, conv.in_channels, dev).view(1, -1, 1, 1)
            out.append((conv.weight, keep))
        return out


def _rebuild_plans(module: PartitionedResNet26, incompatible_keys: Any) -> None:
    """Loaded masks invalidate cached plans."""
    module._plans.clear()
    module._build_plans()


@MODELS.register("partitioned_resnet26")
def build_partitioned_resnet26(tasks: Sequence[Any], *, partition: Any = None,
                               partition_layers: str = "last_stage_conv1", exec_mode: str = "sliced",
                               partition_seed: int = 0, share_amt: float = SHARE_AMT,
                               **resnet_opts: Any) -> PartitionedResNet26:
    """ResNet-26 with a feature partition (see `mtl.models.factory.build_model` for the options)."""
    names = [n for n, _ in task_specs(tasks)]
    families = [getattr(t, "family", "") for t in tasks]
    part = resolve_partition(partition or "share_all", names, seed=partition_seed, share_amt=share_amt,
                             families=families)
    return PartitionedResNet26(tasks, part, layers=partition_layers, exec_mode=exec_mode, **resnet_opts)
