"""The distillation proxy's settings with their defaults (the original's, reference/original-system.md §3.8),
defined once: the distill job's options (mtl/jobs/distill_options.py), the proxy objective
(mtl/distill/objective.py) and `ProxySchedule` (mtl/distill/proxy.py) take theirs from `PROXY`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProxyDefaults:
    """Schedule (steps ... eval_batch_size), data (train_images ... data_seed), cache and student defaults."""

    steps: int = 3000
    batch_size: int = 4
    lr: float = 1.0
    lr_drop_steps: tuple[int, ...] = (2000,)
    lr_drop_factor: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 1e-5
    eval_batch_size: int = 256
    train_images: int = 0
    val_images: int = 3000
    augment: bool = True
    data_seed: int = 0
    cache_features: bool = True
    cache_device: str = "auto"
    cache_dtype: str = "float32"
    partition_layers: str = "last_stage_conv1"
    stack: str = "grouped"
    student_init: str = ""
    proxy_readout: str = "original"
    amp: bool = True


PROXY = ProxyDefaults()
