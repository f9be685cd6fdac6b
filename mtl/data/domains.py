"""Fixed domain order, class counts and per-domain flags of the datasets mtl knows.

The task order is the original system's (``--task_choice`` indexes into it); the devkit code of a
domain is its alphabetical position (1-based), which the annotation ids encode as code * 10**7 + k.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DomainSpec:
    """One domain of a dataset.

    Attributes:
        name: directory / annotation-file name (e.g. "cifar100").
        code: devkit code: category ids are code * 10**7 + k, k = 1..num_classes.
        num_classes: number of categories.
        flip_safe: whether a horizontal flip keeps the label (False for signs, digits, glyphs).
        baseline_acc: accuracy (%) of the reference fine-tuned ResNet-26 (decathlon score: 250 pts).
        proxy_reference: accuracy fraction the distillation proxy divides by (original `task_high`).
        family: the task family (datasets built with a known sharing structure, mtl/data/families.py);
            "" when the dataset states none.
    """

    name: str
    code: int
    num_classes: int
    flip_safe: bool = True
    baseline_acc: float = 50.0
    proxy_reference: float = 1.0
    family: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its domains in task order."""

    name: str
    domains: tuple[DomainSpec, ...]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.domains]

    def domain(self, name: str) -> DomainSpec:
        for d in self.domains:
            if d.name == name:
                return d
        raise KeyError(f"{self.name} has no domain {name!r} (domains: {', '.join(self.names)})")


DECATHLON = DatasetSpec(
    "decathlon",
    (
        DomainSpec("imagenet12", 6, 1000, True, 59.87, 0.63),
        DomainSpec("aircraft", 1, 100, True, 60.34, 0.55),
        DomainSpec("cifar100", 2, 100, True, 82.12, 0.80),
        DomainSpec("daimlerpedcls", 3, 2, True, 92.82, 1.0),
        DomainSpec("dtd", 4, 47, True, 55.53, 0.51),
        DomainSpec("gtsrb", 5, 43, False, 97.53, 1.0),
        DomainSpec("vgg-flowers", 10, 102, True, 81.41, 0.85),
        DomainSpec("omniglot", 7, 1623, False, 87.69, 0.89),
        DomainSpec("svhn", 8, 10, False, 96.55, 0.96),
        DomainSpec("ucf101", 9, 101, True, 51.20, 0.85),
    ),
)

DATASETS: dict[str, DatasetSpec] = {"decathlon": DECATHLON}
DATASET_CHOICES = ("decathlon", "mini_decathlon", "mini_families", "mini_families_plain", "mini_families_plain_90",
                   "mini_families_plain_60")  # the option choices of every job


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset spec (e.g. the mini-decathlon) to the table `get_dataset` reads."""
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a known dataset; ValueError listing the choices otherwise."""
    _load_builtin_specs()
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (choices: {', '.join(sorted(DATASETS))})")
    return DATASETS[name]


def _load_builtin_specs() -> None:
    # The embedded datasets' modules register their own specs; importing them here keeps one source of truth.
    import mtl.data.families  # noqa: F401
    import mtl.data.mini  # noqa: F401


def parse_task_choice(choice: str, spec: DatasetSpec) -> list[str]:
    """Domain names from a dash list of indices or names, e.g. "1-2-3" or "aircraft-dtd".

    Raises:
        ValueError: on an empty list, an index out of range, an unknown name or a repeat.
    """
    parts = [p.strip() for p in str(choice).split("-")] if str(choice).strip() else []
    # Domain names may contain dashes (vgg-flowers): greedily re-join parts that form a name.
    names: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.isdigit():
            idx = int(part)
            if idx >= len(spec.domains):
                raise ValueError(
                    f"task index {idx} is out of range: {spec.name} has {len(spec.domains)} domains "
                    f"(0..{len(spec.domains) - 1}: {', '.join(spec.names)})"
                )
            names.append(spec.domains[idx].name)
            i += 1
            continue
        for j in range(len(parts), i, -1):
            candidate = "-".join(parts[i:j])
            if candidate in spec.names:
                names.append(candidate)
                i = j
                break
        else:
            raise ValueError(
                f"unknown task {part!r} in --task_choice {choice!r}; use indices 0..{len(spec.domains) - 1} "
                f"or names: {', '.join(spec.names)}"
            )
    if not names:
        raise ValueError("--task_choice is empty; give a dash list such as 1-2-3")
    if len(set(names)) != len(names):
        raise ValueError(f"--task_choice {choice!r} names a task twice")
    return names


def task_families(dataset: str, tasks: list[str]) -> list[str]:
    """Each task's family in `dataset` ("" where the dataset states none)."""
    spec = get_dataset(dataset)
    return [spec.domain(t).family for t in tasks]


def choose_tasks(dataset: str, task_choice: str) -> list[str]:
    """Domain names chosen by a job's --task_choice; UserError (with the dataset named) when bad."""
    from mtl.errors import UserError

    try:
        return parse_task_choice(task_choice, get_dataset(dataset))
    except ValueError as err:
        raise UserError(f"{err} (dataset {dataset})") from None
