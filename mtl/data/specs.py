"""The types that describe a dataset: `DomainSpec` (one domain) and `DatasetSpec` (domains in task order).

The datasets themselves are listed in mtl/data/domains.py.
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
