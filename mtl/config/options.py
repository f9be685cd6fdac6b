"""Option dataclasses: every job kind declares its options as fields with a default and one line of help.

A field's metadata says whether it may change when a run is continued (`resume_safe`) and, optionally,
its allowed `choices`. `coerce_value` (mtl/config/coerce.py) turns command-line strings and config
values into the field's type; `apply_values` (mtl/config/groups.py) sets them, groups included.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mtl.config.coerce import check_bounds, coerce_settings, coerce_value  # noqa: F401  (the one coercer)
from mtl.config.groups import Group, apply_values, describe_group, field_types, option_fields, resolve_groups
from mtl.config.groups import type_name as groups_type_name
from mtl.data.domains import DATASET_CHOICES
from mtl.errors import UserError


def option(default: Any, help: str, *, resume_safe: bool = False, choices: tuple | None = None,
           at_least: float | None = None, above: float | None = None, at_most: float | None = None,
           below: float | None = None, group: Group | None = None, type_name: str = "") -> Any:
    """A dataclass field with help text; list / dict defaults are copied per instance.

    `at_least` / `above` / `at_most` / `below` bound a number (checked when a value is set; every float
    option must also be finite). `group`: a dict option holding a plug-in's or a stage's typed options
    (mtl/config/groups.py). `type_name`: what --help calls the type.
    """
    bounds = {k: v for k, v in (("at_least", at_least), ("above", above), ("at_most", at_most),
                                ("below", below)) if v is not None}
    metadata = {"help": help, "resume_safe": resume_safe, "choices": choices, "bounds": bounds, "group": group,
                "type_name": type_name}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunOptions:
    """Options every job has."""

    GROUP: ClassVar[str] = "run"  # the heading of this class's own options in --help

    seed: int = option(0, "random seed for weights, data order and augmentation")
    device: str = option("auto", "auto, cpu, cuda or cuda:N", resume_safe=True)
    data_dir: str = option("data", "dataset root (holds decathlon/ and mini_decathlon/)", resume_safe=True)
    checkpoint_every: int = option(100, "save a checkpoint every this many steps", resume_safe=True)
    keep_checkpoints: int = option(3, "how many recent checkpoints to keep besides the best", resume_safe=True)
    log_every: int = option(20, "write training scalars every this many steps", resume_safe=True)

    def check_inputs(self, exp_root: str | os.PathLike) -> None:
        """What the run needs from this machine (device, data, named files and runs under `exp_root`);
        UserError before the run folder is created. Separate from `validate`, which checks values only
        (saved configs are re-validated on other machines). Subclasses extend it."""
        from mtl.util.device import resolve_device

        resolve_device(self.device)

    def validate(self) -> None:
        """Group options typed against their schema, then cross-field checks; raise UserError. Subclasses
        extend it (calling this first)."""
        resolve_groups(self)
        for name in ("checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1 (got {getattr(self, name)}).")


@dataclass
class TaskOptions(RunOptions):
    """Options of a job on some tasks of a dataset: the tasks group."""

    GROUP: ClassVar[str] = "tasks"

    dataset: str = option("mini_decathlon", "dataset under data_dir", choices=DATASET_CHOICES)
    task_choice: str = option("1-2-3-4-5-6-7-8-9", "dash list of task indices or names (see README)")

    def validate(self) -> None:
        super().validate()
        self.task_names()

    def task_names(self) -> list[str]:
        """The chosen domains, in task order; UserError for a bad --task_choice."""
        from mtl.data.domains import choose_tasks

        return choose_tasks(self.dataset, self.task_choice)


@dataclass
class ModelShapeOptions(TaskOptions):
    """The model group: the size of the ResNet-26 (a distilled student's must match its teachers')."""

    GROUP: ClassVar[str] = "model"

    width: float = option(1.0, "channel width factor of ResNet-26 (a distilled student: its teachers')", above=0)
    input_res: int = option(72, "input resolution (below 72: downscaled on the device, for CPU demos; a distilled "
                            "student: its teachers')", at_least=1)

    def validate(self) -> None:
        super().validate()
        if self.width <= 0 or self.input_res < 1:
            raise UserError(f"--width must be positive and --input_res at least 1 (got {self.width} and "
                            f"{self.input_res}).")


@dataclass
class PartitionOptions(TaskOptions):
    """The partition group: which channels of the partitioned layers each task uses."""

    GROUP: ClassVar[str] = "partition"

    partition: str = option("share_all", "partition: share_all, independent, share_fwd_only, share_fixed:S, random, "
                            "families (a families dataset's oracle), or a partition .json file")
    partition_seed: int = option(0, "seed of the mask sampler (and of the random partition)")

    def uses_partition(self) -> bool:
        """Whether the run builds a partitioned model (a job whose model may be plain overrides it)."""
        return True

    def check_inputs(self, exp_root: str | os.PathLike) -> None:
        super().check_inputs(exp_root)
        if self.uses_partition():
            from mtl.meta.partition import check_partition_file

            check_partition_file(self.partition, self.task_names())

    def validate(self) -> None:
        super().validate()
        if self.uses_partition():
            from mtl.meta.partition import check_partition_spec

            check_partition_spec(self.partition)


def build_options(cls: type, values: dict[str, Any], source: str, notes: list[str] | None = None) -> Any:
    """An instance of `cls` from defaults updated with `values`, each coerced and checked, then validated.

    Args:
        cls: the job's options dataclass.
        values: option name, or a dotted path into a group (`method.alpha`), -> value (strings from the
            command line are parsed).
        source: where the values came from, for error messages ("config exp.dec", "command line").
        notes: collects deprecation notices for old spellings (None: old spellings are silent).
    """
    opts = cls()
    apply_values(opts, values, source, notes)
    opts.validate()
    return opts


def dotted(prefix: str, **values: Any) -> dict[str, Any]:
    """`{prefix}.{key}` -> value, for config modules: ``**dotted("optimizer", delta_size=0.1)``."""
    return {f"{prefix}.{key}": value for key, value in values.items()}


def option_group(cls: type, name: str) -> str:
    """The group heading of option `name` of options class `cls`: the `GROUP` of the shared group class
    that first declares it ("run", "tasks", "model", "partition"), "" for the job's own options."""
    for klass in reversed(cls.__mro__):
        if name in vars(klass).get("__annotations__", {}):
            return vars(klass).get("GROUP", "")
    return ""


def describe_options(opts: Any) -> list[tuple[str, str, Any, str, bool]]:
    """(name, type name, current value, help, resume-safe) of every option, for --help; a group gives
    one row per typed entry of the chosen plug-in (`method.alpha`), a stage group one row."""
    types = field_types(type(opts))
    rows = []
    for name, fld in option_fields(type(opts)).items():
        safe = bool(fld.metadata.get("resume_safe"))
        if fld.metadata.get("group"):
            rows += [(*row, safe) for row in describe_group(opts, name, fld.metadata.get("help", ""))]
            continue
        type_name = fld.metadata.get("type_name") or groups_type_name(types[name])
        rows.append((name, type_name, getattr(opts, name), fld.metadata.get("help", ""), safe))
    return rows
