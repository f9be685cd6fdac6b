"""Options of the distill job (the distillation proxy for one partition)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mtl.config.options import ModelShapeOptions, PartitionOptions, option
from mtl.config.proxy_defaults import PROXY
from mtl.data.domains import DATASET_CHOICES
from mtl.errors import UserError

READOUTS = ("original", "teacher_bn", "probe")  # proxy_readout's choices, implemented in mtl/distill/features.py


@dataclass
class DistillOptions(PartitionOptions, ModelShapeOptions):
    """Score a partition: a partitioned student learns the teachers' last-stage features (original §3.8)."""

    dataset: str = option("decathlon", "dataset under data_dir", choices=DATASET_CHOICES)  # the original's
    teachers: str = option("teachers", "single-task teacher runs: comma list of exp/<id> (one per task) or a "
                           "folder of runs (relative to the experiment root or a path)")
    partition_layers: str = option(PROXY.partition_layers, "partitioned layers of the student: last_stage_conv1 "
                                   "(the original's) or last_stage (residual stream too)",
                                   choices=("last_stage_conv1", "last_stage"))
    student_init: str = option(PROXY.student_init, "run whose last stage initialises the student (original: the "
                               "ImageNet model); empty = He init from --seed")
    proxy_readout: str = option(PROXY.proxy_readout, "original: the last block distilled after the final BN + ReLU "
                                "(the student's own) and scored by the teacher's head on it; teacher_bn: the raw last "
                                "block distilled, scored through the teacher's final BN; probe: distilled as "
                                "original, scored by a ridge probe fitted to the student's own kept channels",
                                choices=READOUTS)
    steps: int = option(PROXY.steps, "student training steps (tasks in round robin)", at_least=1)
    batch_size: int = option(PROXY.batch_size, "images per step", at_least=1)
    lr: float = option(PROXY.lr, "SGD learning rate (Nesterov)", above=0)
    lr_drop_steps: list[int] = option(list(PROXY.lr_drop_steps), "steps at which the LR is divided by lr_drop_factor")
    lr_drop_factor: float = option(PROXY.lr_drop_factor, "LR divisor at each drop", above=0)
    momentum: float = option(PROXY.momentum, "SGD momentum", at_least=0, at_most=1)
    weight_decay: float = option(PROXY.weight_decay, "weight decay", at_least=0)
    train_images: int = option(PROXY.train_images, "cached training examples per task (0: what the schedule "
                               "consumes)", at_least=0)
    val_images: int = option(PROXY.val_images, "validation images per task the score uses (at most; seeded "
                             "subset)", at_least=1)
    augment: bool = option(PROXY.augment, "augment the cached training examples (one seeded draw each)")
    data_seed: int = option(PROXY.data_seed, "seed of the training and validation subsets (same for every candidate)")
    cache_features: bool = option(PROXY.cache_features, "compute the teachers' features once (False: per batch; "
                                  "same scores)")
    cache_device: str = option(PROXY.cache_device, "where cached features live: auto (the device when they fit), "
                               "cpu, device",
                               choices=("auto", "cpu", "device"))
    cache_dtype: str = option(PROXY.cache_dtype, "storage dtype of cached features", choices=("float32", "bfloat16"))
    stack: str = option(PROXY.stack, "how stacked students run: grouped (convolutions) or vmap (torch.func)",
                        choices=("grouped", "vmap"))
    eval_batch_size: int = option(PROXY.eval_batch_size, "images per scoring batch", resume_safe=True, at_least=1)
    amp: bool = option(PROXY.amp, "bf16 autocast on CUDA (ignored on CPU)", resume_safe=True)

    def check_inputs(self, exp_root: str | os.PathLike) -> None:
        super().check_inputs(exp_root)
        from mtl.jobs.inputs import check_data

        check_data(self.dataset, self.data_dir, self.task_names())

    def validate(self) -> None:
        super().validate()
        for name in ("steps", "batch_size", "val_images", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1 (got {getattr(self, name)}).")
        if self.lr <= 0:
            raise UserError(f"--lr must be positive (got {self.lr}).")
