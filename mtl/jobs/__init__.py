"""Job kinds (train, distill, search, pipeline, toy): each declares its options and a run function.

A job's run function gets a `JobContext` and returns the final metrics (written to results.json).
Job modules are imported lazily by `get_job` so `main.py --help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from mtl.registry import Registry

# The module that registers each job kind; imported on first use.
JOBS = Registry("job kind", modules={
    "toy": "mtl.jobs.toy",
    "train": "mtl.jobs.train",
    "distill": "mtl.jobs.distill",
    "proxy_validation": "mtl.jobs.proxy_validation",
    "methods_benchmark": "mtl.jobs.methods_benchmark",
    "search": "mtl.jobs.search",
    "pipeline": "mtl.jobs.pipeline",
})


@dataclass(frozen=True)
class Job:
    """A job kind: its name, options dataclass and run function."""

    name: str
    options_cls: type
    run: Callable[[Any], dict[str, Any]]
    # Whether a higher checkpoint metric is better (accuracy) or lower (loss).
    higher_is_better: bool = True


def register_job(name: str, options_cls: type, higher_is_better: bool = True):
    """Decorator registering `run(ctx) -> results` as job kind `name`."""

    def decorate(run: Callable[[Any], dict[str, Any]]):
        JOBS.register(name)(Job(name, options_cls, run, higher_is_better))
        return run

    return decorate


def get_job(name: str) -> Job:
    """The job kind `name`, importing its module when needed; KeyError listing the choices."""
    return JOBS.get(name)


def job_names() -> list[str]:
    return JOBS.available()
