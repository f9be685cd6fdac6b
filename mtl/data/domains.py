"""The datasets mtl knows (the decathlon and the generated ones): domain order, class counts, per-domain flags.

The task order is the original system's (``--task_choice`` indexes into it); the devkit code of a
domain is its alphabetical position (1-based), which the annotation ids encode as code * 10**7 + k.
"""

from __future__ import annotations

from mtl.data.embedded import EmbeddedDataset
from mtl.data.families import FAMILIES, FAMILIES_PLAIN
from mtl.data.mini import MINI
from mtl.data.specs import DatasetSpec, DomainSpec
from mtl.errors import UserError


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

# The generated datasets (mtl/data/embedded.py): their generators, by name.
EMBEDDED: dict[str, EmbeddedDataset] = {d.name: d for d in (MINI, FAMILIES, *FAMILIES_PLAIN)}
DATASETS: dict[str, DatasetSpec] = {"decathlon": DECATHLON, **{name: d.spec for name, d in EMBEDDED.items()}}
DATASET_CHOICES = ("decathlon", "mini_decathlon", "mini_families", "mini_families_plain", "mini_families_plain_90",
                   "mini_families_plain_60")  # the option choices of every job
assert set(DATASET_CHOICES) == set(DATASETS), "every dataset is a choice of the jobs' --dataset"


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a known dataset; ValueError listing the choices otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (choices: {', '.join(sorted(DATASETS))})")
    return DATASETS[name]


def get_embedded(name: str) -> EmbeddedDataset | None:
    """The generator of an embedded dataset, None for a dataset that must be downloaded (the decathlon)."""
    return EMBEDDED.get(name)


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
    try:
        return parse_task_choice(task_choice, get_dataset(dataset))
    except ValueError as err:
        raise UserError(f"{err} (dataset {dataset})") from None
