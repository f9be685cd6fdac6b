"""The distillation proxy's settings with their defaults (the original's, reference/original-system.md §3.8),
defined once: the distill job's options (mtl/jobs/distill_options.py), the proxy objective
(mtl/distill/objective.py, its --objective.<name> help lines too) and `ProxySchedule` (mtl/distill/proxy.py)
take theirs from `PROXY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ProxyDefaults:
    """Schedule (steps ... eval_batch_size), data (train_images ... data_seed), cache and student defaults."""

    steps: int = _setting(3000, "student training steps (tasks in round robin)")
    batch_size: int = _setting(4, "images per step")
    lr: float = _setting(1.0, "SGD learning rate (Nesterov)")
    lr_drop_steps: tuple[int, ...] = _setting((2000,), "steps at which the LR is divided by lr_drop_factor")
    lr_drop_factor: float = _setting(10.0, "LR divisor at each drop")
    momentum: float = _setting(0.9, "SGD momentum")
    weight_decay: float = _setting(1e-5, "weight decay")
    eval_batch_size: int = _setting(256, "images per scoring batch")
    train_images: int = _setting(0, "cached training examples per task (0: what the schedule consumes)")
    val_images: int = _setting(3000, "validation images per task the score uses (at most; seeded subset)")
    augment: bool = _setting(True, "augment the cached training examples (one seeded draw each)")
    data_seed: int = _setting(0, "seed of the training and validation subsets (same for every candidate)")
    cache_features: bool = _setting(True, "compute the teachers' features once (False: per batch; same scores)")
    cache_device: str = _setting("auto", "where cached features live: auto (the device when they fit), cpu, device")
    cache_dtype: str = _setting("float32", "storage dtype of cached features: float32 or bfloat16")
    partition_layers: str = _setting("last_stage_conv1", "partitioned layers of the student: last_stage_conv1 "
                                     "(the original's) or last_stage")
    stack: str = _setting("grouped", "how stacked students run: grouped (convolutions) or vmap (torch.func)")
    student_init: str = _setting("", "run whose last stage initialises the student; empty = He init from the seed")
    proxy_readout: str = _setting("original", "original (after the final BN + ReLU, the teacher's head), teacher_bn "
                                  "(the raw last block) or probe (a ridge probe on the student's kept channels)")
    amp: bool = _setting(True, "bf16 autocast on CUDA (ignored on CPU)")


PROXY = ProxyDefaults()
PROXY_HELP = {f.name: f.metadata["help"] for f in fields(ProxyDefaults)}  # one help line per setting
