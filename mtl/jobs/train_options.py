"""Options of the train job (single-task, partitioned or graph-composed multi-task, MTL methods)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mtl.config.groups import Group
from mtl.config.options import ModelShapeOptions, PartitionOptions, option
from mtl.errors import UserError


@dataclass
class TrainOptions(PartitionOptions, ModelShapeOptions):
    """Multi-task training: by default as in the original (one task's batch per step, that task's own
    SGD: method 'naive'); any other --mtl_method takes one batch of every task per step and steps one
    SGD over shared and task parameters with the method's combined update."""

    model: str = option("partitioned_resnet26", "model: resnet26, partitioned_resnet26 or graph (--graph_model)")
    graph_model: list[dict] = option([], "graph-composed model: node dicts (name, module, anchor(s), loss, "
                                     "loss_weight); see mtl/models/graph_config.py; needs --model graph",
                                     type_name="JSON_LIST")
    mtl_method: str = option("naive", "multi-task method (mtl/methods): naive = one task per step with "
                             "per-task optimizers; others = every task every step, combined update")
    method_options: dict = option({}, "options of --mtl_method (--help with it lists them)",
                                  group=Group("method", kind="method", plugin="mtl_method"))
    grad_source: str = option("shared", "gradient source the model declares: shared (all shared params), "
                              "last_shared (last shared layer) or representation (shared features)",
                              choices=("shared", "last_shared", "representation"))
    dropout: float = option(0.3, "dropout before the heads", at_least=0, below=1)
    last_third_only: bool = option(False, "freeze the conv weights of the stem and the first two stages")
    stem_relu: bool = option(False, "ReLU after the stem's BatchNorm (not in the original's ResNet-26)")
    bn_semantics: str = option("original", "original: every task's optimizer holds every task's BatchNorms and "
                               "under last_third_only the final BN does not train; own: only the task's own "
                               "BatchNorms, the final BN always trains", choices=("original", "own"))
    partition_layers: str = option("last_stage_conv1", "partitioned layers: last_stage_conv1 (the original's with "
                                   "last_third_only), all_stages_conv1 (the original's without), last_stage, all",
                                   choices=("last_stage_conv1", "all_stages_conv1", "last_stage", "all"))
    exec_mode: str = option("sliced", "partitioned execution: sliced (fast) or masked (same results)",
                            resume_safe=True, choices=("sliced", "masked"))
    backbone: str = option("", "pretrained backbone (the original's ImageNet model): a finished plain ResNet-26 run "
                           "(exp.imagenet; multi-task allowed) whose trunk, stages and BatchNorms initialise every task; none or "
                           "empty = no backbone (then --last_third_only is an error)")
    init_from: str = option("", "initialise weights from another run (exp/<id> or <id>; its best checkpoint)")
    num_rounds: int = option(40, "rounds of training then validation", resume_safe=True, at_least=1)
    train_iters: int = option(5000, "training steps per round", at_least=1)
    batch_size: int = option(64, "images per step", at_least=1)
    lr: float = option(0.05, "SGD learning rate", above=0)
    momentum: float = option(0.9, "SGD momentum (Nesterov)", at_least=0, at_most=1)
    weight_decay: float = option(1e-4, "weight decay", at_least=0)
    lr_drop_steps: list[int] = option([150000], "global steps at which the LR is divided by lr_drop_factor")
    lr_drop_factor: float = option(10.0, "LR divisor at each drop", above=0)
    curriculum: str = option("train_accuracy", "task sampling: uniform (random, equal odds), proportional, "
                             "train_accuracy, or fixed (--curriculum_order cycled by the global step)",
                             choices=("uniform", "proportional", "train_accuracy", "fixed"))
    curriculum_order: str = option("", "fixed curriculum: a .npy (the original's dec_order.npy) or .json file of "
                                   "task positions (0-based, in --task_choice order); empty = round robin "
                                   "(the original's uniform curriculum)")
    curriculum_temperature: float = option(0.3, "train_accuracy curriculum: p ∝ (1 - acc + bias)^(1/temperature)")
    curriculum_bias: float = option(0.15, "train_accuracy curriculum: the bias above (the original's curriculum_bias)")
    clip_grad: float = option(0.0, "clip each step's gradient norm (over the stepping task's parameters) to this; "
                              "0 = off (the original's --clip_grad)")
    train_on_valid: bool = option(False, "train on train + val (the benchmark rules allow it)")
    val_max_images: int = option(0, "validate on at most this many images per task (0 = all)", resume_safe=True, at_least=0)
    eval_batch_size: int = option(256, "images per evaluation batch", resume_safe=True, at_least=1)
    divergence_patience: int = option(5, "stop as diverged after this many non-finite steps in a row (each "
                                      "is skipped)", resume_safe=True, at_least=1)
    amp: bool = option(True, "autocast on CUDA (--amp_dtype; on CPU only with --amp_cpu)", resume_safe=True)
    amp_dtype: str = option("bf16", "autocast dtype: bf16, or fp16 with a GradScaler (checkpointed; per-task "
                            "gradients unscaled before a method combines them)", choices=("bf16", "fp16"))
    amp_cpu: bool = option(False, "autocast on CPU too (e.g. bf16 without a GPU)", resume_safe=True)
    channels_last: bool = option(True, "channels_last memory format on CUDA", resume_safe=True)
    compile: bool = option(False, "torch.compile the model (first steps slower)", resume_safe=True)
    prefetch: int = option(2, "batches read ahead by the loader", resume_safe=True, at_least=0)
    in_memory: bool = option(False, "hold the training images in RAM", resume_safe=True)
    sync_bn: bool = option(False, "data-parallel on CUDA: SyncBatchNorm (batch statistics over the global "
                           "batch) instead of each rank's own; off = per-rank BatchNorm, as DDP's default",
                           resume_safe=True)
    check_ranks: bool = option(False, "data-parallel debug: compare checksums of the method state and the "
                               "weights across ranks after every step (an error names what differs)",
                               resume_safe=True)
    write_submission: bool = option(False, "predict the test split and write submission.json at the end",
                                    resume_safe=True)

    def check_inputs(self, exp_root: str | os.PathLike) -> None:
        super().check_inputs(exp_root)
        from mtl.jobs.backbone import check_backbone, check_backbone_choice
        from mtl.jobs.inputs import check_data
        from mtl.train.distributed import env_world_size

        # here, not in validate: a config's own values are validated before the command line's apply
        check_backbone_choice(self.last_third_only, self.backbone)
        check_backbone(self.backbone, exp_root)
        check_data(self.dataset, self.data_dir, self.task_names())
        if env_world_size() > 1:
            self._check_data_parallel()
        if self.curriculum_order:
            self.task_order()

    def validate(self) -> None:
        super().validate()
        for name in ("num_rounds", "train_iters", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1 (got {getattr(self, name)}).")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--dropout must be in [0, 1) (got {self.dropout}).")
        if self.lr <= 0 or self.curriculum_temperature <= 0:
            raise UserError("--lr and --curriculum_temperature must be positive.")
        if self.curriculum_order and self.curriculum != "fixed":
            raise UserError(f"--curriculum_order is only read by --curriculum fixed (got --curriculum "
                            f"{self.curriculum}); add --curriculum fixed or drop --curriculum_order.")
        self._validate_model_and_method()

    def _validate_model_and_method(self) -> None:
        if (self.model == "graph") != bool(self.graph_model):
            raise UserError("--model graph and --graph_model go together: a graph model needs its node list, "
                            "and node lists are only used by --model graph.")
        if self.graph_model:  # errors name the node before any run folder exists
            from mtl.data.domains import get_dataset
            from mtl.models.graph_config import build_graph_model

            spec = get_dataset(self.dataset)
            build_graph_model(self.graph_model, [spec.domain(t) for t in self.task_names()],
                              input_res=self.input_res, grad_source=self.grad_source)
        from mtl.methods import build_method  # imported here: --help stays fast

        method = build_method(self.mtl_method, len(self.task_names()), self.method_options)
        if method.uses_task_optimizers and self.grad_source != "shared":
            raise UserError(f"--grad_source {self.grad_source} has no effect with --mtl_method "
                            f"{self.mtl_method} (each task steps its own optimizer on its own gradient).")

    def uses_partition(self) -> bool:
        return self.model.startswith("partitioned")

    def task_order(self) -> list[int] | None:
        """The fixed curriculum's task positions (None: round robin); UserError for a bad file."""
        if not self.curriculum_order:
            return None
        from mtl.data.sampling import load_task_order

        try:
            return load_task_order(self.curriculum_order, len(self.task_names()))
        except ValueError as exc:
            raise UserError(f"--curriculum_order: {exc}.") from exc

    def _check_data_parallel(self) -> None:
        """torchrun: methods whose state would learn from one rank's slice are refused (every rank)."""
        from mtl.methods import build_method
        from mtl.methods.base import SharedParts
        from mtl.util.device import resolve_device

        if self.sync_bn and resolve_device(self.device).type != "cuda":
            raise UserError("--sync_bn needs CUDA devices (torch's SyncBatchNorm has no CPU kernel); drop it on "
                            "CPU, where each rank normalises its own slice of the batch.")
        method = build_method(self.mtl_method, len(self.task_names()), self.method_options)
        if method.uses_task_optimizers:
            return
        source = method.source_for(SharedParts([], source=self.grad_source))
        if source not in method.data_parallel_sources:
            raise UserError(f"--mtl_method {self.mtl_method} with gradient source {source} cannot run "
                            "data-parallel yet (its state would learn from each rank's slice, not the global "
                            "batch); run it in one process (python main.py)"
                            + (f" or use source {method.data_parallel_sources[0]}"
                               if method.data_parallel_sources else "") + ".")
