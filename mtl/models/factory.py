"""Model registry and factory: `build_model("partitioned_resnet26", tasks, width=1.0, ...)`."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from mtl.registry import Registry

# The module that registers each model (imported on first use).
MODELS = Registry("model", modules={"resnet26": "mtl.models.resnet", "partitioned_resnet26": "mtl.models.partitioned"})
PARTITION_OPTIONS = frozenset({"partition_layers", "exec_mode", "partition_seed", "share_amt"})


def task_specs(tasks: Sequence[Any]) -> list[tuple[str, int]]:
    """(name, num_classes) pairs from DomainSpec-like objects or pairs; names must be distinct."""
    specs = []
    for t in tasks:
        name, k = (t.name, t.num_classes) if hasattr(t, "num_classes") else t
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"bad task name {name!r} (non-empty, no '.')")
        specs.append((name, int(k)))
    names = [n for n, _ in specs]
    if not specs or len(set(names)) != len(names):
        raise ValueError(f"need at least one task and distinct names, got {names}")
    return specs


def build_model(name: str, tasks: Sequence[Any], **opts: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name: "resnet26" or "partitioned_resnet26" (`MODELS.available()` lists all).
        tasks: task specs in model order (DomainSpec-like objects or (name, num_classes) pairs).
        **opts: builder options. ResNet-26: width (1.0), dropout (0.0), last_third_only (False).
            Partitioned: partition (preset name, "share_fixed:0.5", JSON path or Partition;
            default "share_all"), partition_layers (one of `mtl.models.partitioned.LAYOUTS`),
            exec_mode ("sliced" | "masked"), partition_seed (0; seed of `random` and of the sampler
            for presets), share_amt (mtl.meta.partition.SHARE_AMT).

    Returns:
        The model (on CPU, in training mode).
    """
    return MODELS.get(name)(tasks, **opts)
