"""`ProxyObjective`: the distillation proxy as a search objective ("proxy" in OBJECTIVES).

Picklable: it holds settings and resolved teacher paths only; the teachers and the feature cache are
built lazily in the process (worker) that first evaluates, on that worker's device (MTL_DEVICE), and
reused for every later candidate. `evaluate_batch` scores a population in one stacked run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from mtl.config.proxy_defaults import PROXY, PROXY_HELP
from mtl.distill.features import READOUTS, FeatureCache, data_folder
from mtl.distill.population import evaluate_population
from mtl.distill.proxy import ProxySchedule
from mtl.distill.student import LAYOUTS, STACK_MODES, load_student_init
from mtl.distill.teachers import load_teachers, teacher_runs
from mtl.errors import UserError
from mtl.meta.objectives import OBJECTIVES
from mtl.meta.partition import candidate_partition
from mtl.meta.space import Space
from mtl.meta.pool import current_device

CACHE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@OBJECTIVES.register("proxy")
@dataclass
class ProxyObjective:
    """Score partitions with the distillation proxy (mtl/distill/proxy.py); higher is better.

    Args:
        teachers: teacher runs (list or comma list of run names / paths) or a teachers folder.
        space / tasks: the search space (its partition block names the tasks) or the task list.
        dataset, data_dir, exp_root: where data and teacher runs live.
        width, input_res: None = the teachers' (checked to agree).
        steps ... eval_batch_size: the proxy schedule (defaults: the original's).
        train_images: cached training examples per task (0: what the schedule consumes).
        val_images: validation images per task (at most).
        augment, data_seed: augmentation of the cached examples and seed of both subsets.
        cache_features / cache_device / cache_dtype: see FeatureCache.
        partition_layers: "last_stage_conv1" (the original's) or "last_stage" (see mtl/distill/student.py).
        stack: "grouped" or "vmap" stacking of a population.
        max_population: largest stack trained at once (0: a whole batch of candidates).
        student_init: a run whose last stage initialises every student ("" = He init per seed).
        proxy_readout: "original", "teacher_bn" or "probe" (mtl/distill/features.py READOUTS).
        amp: bf16 autocast on CUDA.
        param_name: the params entry holding the raw [2, N, N] partition (the space's, when given).
    """

    teachers: Any
    space: Space | None = None
    tasks: Sequence[str] | None = None
    dataset: str = "decathlon"
    data_dir: str = "data"
    exp_root: str = "exp"
    width: float | None = None
    input_res: int | None = None
    steps: int = PROXY.steps
    batch_size: int = PROXY.batch_size
    lr: float = PROXY.lr
    lr_drop_steps: Sequence[int] = PROXY.lr_drop_steps
    lr_drop_factor: float = PROXY.lr_drop_factor
    momentum: float = PROXY.momentum
    weight_decay: float = PROXY.weight_decay
    eval_batch_size: int = PROXY.eval_batch_size
    train_images: int = PROXY.train_images
    val_images: int = PROXY.val_images
    augment: bool = PROXY.augment
    data_seed: int = PROXY.data_seed
    cache_features: bool = PROXY.cache_features
    cache_device: str = PROXY.cache_device
    cache_dtype: str = PROXY.cache_dtype
    partition_layers: str = PROXY.partition_layers
    stack: str = PROXY.stack
    max_population: int = 0
    student_init: str = PROXY.student_init
    proxy_readout: str = PROXY.proxy_readout
    amp: bool = PROXY.amp
    param_name: str = "partition"
    teacher_paths: dict = field(init=False, default_factory=dict)
    option_help: ClassVar[dict[str, str]] = PROXY_HELP  # --objective.<name> help lines (groups.py)

    def __post_init__(self):
        if self.space is not None and self.space.partition is not None:
            self.param_name = self.space.partition.name
            self.tasks = list(self.tasks or self.space.tasks)
        if not self.tasks:
            raise UserError("proxy objective: give the search space (with a partition block) or the tasks")
        self.tasks = list(self.tasks)
        valid = (self.stack in STACK_MODES, self.cache_dtype in CACHE_DTYPES, self.partition_layers in LAYOUTS,
                 self.proxy_readout in READOUTS)
        if not all(valid):
            raise UserError(f"proxy objective: stack must be one of {STACK_MODES}, cache_dtype one of "
                            f"{tuple(CACHE_DTYPES)}, partition_layers one of {LAYOUTS}, proxy_readout one of "
                            f"{READOUTS} (got {self.stack!r}, {self.cache_dtype!r}, {self.partition_layers!r}, "
                            f"{self.proxy_readout!r})")
        runs = teacher_runs(self.teachers, self.tasks, self.exp_root, self.dataset)  # fail early, in the parent
        self.teacher_paths = {t: str(p) for t, p in runs.items()}
        self._state = None

    @classmethod
    def from_options(cls, opts: Any, exp_root: str | Path, **overrides: Any) -> "ProxyObjective":
        """Build from a distill job's options (DistillOptions); `overrides` win."""
        names = {f.name for f in fields(cls) if f.init} & set(vars(opts))
        values = {n: getattr(opts, n) for n in names}
        values.update(tasks=opts.task_names(), exp_root=str(exp_root), stack=opts.stack)
        values.update(overrides)
        return cls(**values)

    @property
    def schedule(self) -> ProxySchedule:
        return ProxySchedule(self.steps, self.batch_size, self.lr, tuple(self.lr_drop_steps), self.lr_drop_factor,
                             self.momentum, self.weight_decay, self.eval_batch_size)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_state"] = None  # teachers and cache are rebuilt in the worker
        return state

    def __call__(self, params: dict, seed: int) -> dict:
        return self.evaluate_batch([params], [seed])[0]

    def evaluate_batch(self, params_list: Sequence[dict], seeds: Sequence[int]) -> list[dict]:
        """Score candidates together (same batches, stacked students); one result dict each."""
        cache, init = self.load()
        partitions = [candidate_partition(p, int(s), self.tasks, self.param_name) for p, s in zip(params_list, seeds)]
        return evaluate_population(cache, partitions, list(seeds), self.schedule, max_population=self.max_population,
                                   init=init, stack=self.stack, amp=self.amp, layers=self.partition_layers)

    def load(self, device: str | torch.device | None = None) -> tuple[FeatureCache, dict | None]:
        """(feature cache, student init) of this process, built on first use."""
        if self._state is None:
            device = torch.device(device or current_device())
            teachers = load_teachers(list(self.teacher_paths.values()), self.tasks, self.exp_root, self.dataset,
                                     width=self.width, input_res=self.input_res, device=device)
            res = next(iter(teachers.values())).input_res
            count = self.train_images or self.schedule.train_images(len(self.tasks))
            cache = FeatureCache(teachers, data_folder(self.dataset, self.data_dir, self.tasks), self.dataset,
                                 input_res=res, train_images=count, val_images=self.val_images, seed=self.data_seed,
                                 augment=self.augment, device=device, cache=self.cache_features,
                                 cache_device=self.cache_device, dtype=CACHE_DTYPES[self.cache_dtype],
                                 readout=self.proxy_readout)
            init = load_student_init(_run_path(self.student_init, self.exp_root)) if self.student_init else None
            self._state = (cache, init)
        return self._state


def _run_path(name: str, exp_root: str | Path) -> Path:
    for candidate in (Path(name), Path(exp_root) / name, Path(exp_root) / name.removeprefix("exp/")):
        if (candidate / "checkpoints").is_dir():
            return candidate
    raise UserError(f"--student_init {name}: no run folder with checkpoints (looked under {exp_root}).")
