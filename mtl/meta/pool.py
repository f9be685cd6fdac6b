"""The worker-pool protocol, its errors and what every backend shares; `make_pool` builds one by name.

Protocol (`WorkerPool`): `submit(work) -> concurrent.futures.Future` of a dict
{"result": <objective's dict>, "worker": str, "duration": float}; `as_completed(futures)` yields
futures as they finish (and drives the in-process and local pools: work starts when it is awaited);
`close()`. A failed evaluation is a future holding an exception (`EvaluationError`, `WorkerCrashed`,
or Ray's errors) — retrying and recording are the search loop's job, not the pool's.
Backends: "inprocess" and "local" (mtl/meta/workers.py), "ray" (mtl/meta/ray_pool.py). What a pool
runs is anything with `id`, `params` and `seed`: a search's `Candidate`, or a `Work` item (a child run).
"""

from __future__ import annotations

import copy
import os
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol

from mtl.meta.optimizers.base import Candidate
from mtl.registry import Registry

# Each backend is registered by its module, imported on first use (`ray` is an optional dependency).
BACKENDS = Registry("worker backend", modules={"inprocess": "mtl.meta.workers", "local": "mtl.meta.workers",
                                               "ray": "mtl.meta.ray_pool"})

DEVICE_ENV = "MTL_DEVICE"  # where a worker's objective should run ("cpu", "cuda:0")


@dataclass(frozen=True)
class Work:
    """One call `objective(params, seed)` for a pool that is not a search's (e.g. a child run)."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


class EvaluationError(Exception):
    """An objective raised; the message carries the worker's traceback."""


class WorkerCrashed(EvaluationError):
    """The worker process died while evaluating (segfault, OOM kill, os._exit)."""


class WorkerPool(Protocol):
    def submit(self, candidate: Candidate) -> Future: ...

    def as_completed(self, futures: Iterable[Future]) -> Iterator[Future]: ...

    def close(self) -> None: ...


def run_candidate(objective, candidate: Candidate, worker: str) -> dict:
    """Evaluate one candidate (runs inside the worker)."""
    start = time.perf_counter()
    result = objective(copy.deepcopy(candidate.params), candidate.seed)
    return {"result": result, "worker": worker, "duration": time.perf_counter() - start}


def current_device() -> str:
    """The device a worker was given ("cpu", "cuda:0"); "cpu" outside a pool."""
    return os.environ.get(DEVICE_ENV, "cpu")


class PoolBase:
    """Context-manager support: `with make_pool(...) as pool:` closes the pool."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class QueuedPool(PoolBase):
    """A pool that queues submitted candidates (`self._queue`) and hands them out while waiting for
    results: subclasses implement `_dispatch` (start queued work on idle slots) and `_wait`."""

    def submit(self, candidate: Candidate) -> Future:
        future: Future = Future()
        self._queue.append((future, candidate))
        return future

    def cancel_queued(self) -> None:
        """Cancel the work not yet handed to a worker (what is running is left to finish)."""
        while self._queue:
            self._queue.popleft()[0].cancel()

    def as_completed(self, futures: Iterable[Future]) -> Iterator[Future]:
        remaining = list(futures)
        while remaining:
            done = [f for f in remaining if f.done()]
            for future in done:
                remaining.remove(future)
                yield future
            if remaining:
                self._dispatch()
                self._wait()


def evaluate_share(objective, candidates: list[Candidate], worker: str) -> list[tuple[str, Any]]:
    """A worker's share of a generation: one `evaluate_batch` call for a population objective, else one
    candidate at a time; ("ok", outcome) or ("error", traceback) per candidate, in order."""
    if len(candidates) > 1 and hasattr(objective, "evaluate_batch"):
        return _run_batch(objective, candidates, worker)
    return [_run_one(objective, candidate, worker) for candidate in candidates]


def _run_one(objective, candidate: Candidate, worker: str) -> tuple[str, Any]:
    try:
        return "ok", run_candidate(objective, candidate, worker)
    except Exception:
        return "error", traceback.format_exc()


def _run_batch(objective, candidates: list[Candidate], worker: str) -> list[tuple[str, Any]]:
    """One `evaluate_batch` call for all candidates; its time is shared out evenly."""
    start = time.perf_counter()
    try:
        results = objective.evaluate_batch([copy.deepcopy(c.params) for c in candidates], [c.seed for c in candidates])
        if len(results) != len(candidates):
            raise ValueError(f"evaluate_batch returned {len(results)} results for {len(candidates)} candidates")
    except Exception:
        return [("error", traceback.format_exc())] * len(candidates)
    share = (time.perf_counter() - start) / len(candidates)
    return [("ok", {"result": r, "worker": worker, "duration": share}) for r in results]


def make_pool(backend: str, objective, **options) -> WorkerPool:
    """Build a registered pool: "inprocess", "local" or "ray"."""
    return BACKENDS.get(backend)(objective, **options)
