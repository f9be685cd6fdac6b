"""Ray worker pool: long-lived actors, each evaluating stacked shares of every generation.

One actor per GPU of the cluster (or per `gpus_per_eval` share of one), else per `cpus_per_eval`
CPUs. An actor loads the objective once and keeps it for the pool's life, so a proxy objective builds
the teachers' feature cache once per actor, as a local worker does. Like the local backend, the
waiting candidates are split evenly over the idle actors and each share is one `evaluate_batch` call
(one candidate at a time for other objectives). An actor that dies (killed, OOM, segfault) has its
share put back at the front of the queue and evaluated by the next idle actor, a fresh one replacing
it: nothing is lost and nothing is recorded twice; a candidate whose share killed MAX_CRASHES actors
fails with WorkerCrashed (then the search loop's retries apply). Clusters: mtl/meta/ray_cluster.py.
On a multi-machine cluster, `mtl` must be importable on every node.
"""

from __future__ import annotations

import collections
import math
import os
import socket
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ray
from ray import cloudpickle
from ray.exceptions import RayActorError

from mtl.meta.optimizers.base import Candidate
from mtl.meta.ray_cluster import connect_ray, start_local_ray, stop_local_ray
from mtl.meta.pool import BACKENDS, DEVICE_ENV, EvaluationError, QueuedPool, WorkerCrashed, evaluate_share

MAX_CRASHES = 3  # actors a candidate's share may take down before it is failed


class EvaluationActor:
    """Holds the objective in its process; evaluates shares (becomes a Ray actor in RayPool)."""

    def __init__(self, payload: bytes):
        os.environ[DEVICE_ENV] = "cuda:0" if ray.get_gpu_ids() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES
        self.worker = f"ray:{socket.gethostname()}:{os.getpid()}"
        try:  # a load error fails the evaluations (as in a local worker); it is not an actor death
            self.objective, self.load_error = cloudpickle.loads(payload), None
        except Exception:
            self.objective, self.load_error = None, f"could not load the objective in the actor:\n{traceback.format_exc()}"

    def evaluate(self, candidates: list[Candidate]) -> list[tuple[str, Any]]:
        if self.load_error:
            return [("error", self.load_error)] * len(candidates)
        return evaluate_share(self.objective, candidates, self.worker)


@dataclass
class _Slot:
    actor: Any = None
    ref: Any = None  # the running share's ObjectRef
    job: list[tuple[Future, Candidate]] | None = None


@BACKENDS.register("ray")
class RayPool(QueuedPool):
    """Evaluations on Ray actors. Uses the running Ray session if any, else `address`, else a local cluster.

    Args:
        objective: picklable objective, put in the object store once and loaded by each actor.
        address: cluster to join ("auto", "host:6379", "ray://host:10001"); None: start a local cluster.
        num_cpus / num_gpus / object_store_memory: for a local cluster.
        cpus_per_eval: CPUs each actor reserves (sets the actor count on a cluster without GPUs).
        gpus_per_eval: GPUs each actor reserves; 0: one whole GPU when the cluster has GPUs.
        num_actors: override the actor count.
    """

    def __init__(self, objective, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None, object_store_memory: int = 512 * 2**20,
                 cpus_per_eval: float = 1, gpus_per_eval: float = 0, num_actors: int | None = None):
        self._temp_dir, self._owns = None, False
        if not ray.is_initialized():
            if address:
                connect_ray(address)
            else:
                self._temp_dir = start_local_ray(num_cpus, num_gpus, object_store_memory)
            self._owns = True
        try:
            self._setup(objective, cpus_per_eval, gpus_per_eval, num_actors)
        except BaseException:
            self._shutdown()
            raise

    def _setup(self, objective, cpus_per_eval, gpus_per_eval, num_actors) -> None:
        resources = ray.cluster_resources()
        gpus = gpus_per_eval or (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        count = num_actors or (int(resources.get("GPU", 0) // gpus) if gpus else
                               int(resources.get("CPU", 1) // cpus_per_eval))
        self._actor_class = ray.remote(num_cpus=cpus_per_eval, num_gpus=gpus, max_restarts=0)(EvaluationActor)
        self._objective = ray.put(cloudpickle.dumps(objective))  # once; each actor loads it once
        self._batched = hasattr(objective, "evaluate_batch")
        self._slots = [_Slot() for _ in range(max(1, count))]
        self._queue: collections.deque[tuple[Future, Candidate]] = collections.deque()
        self._crashes: collections.Counter[str] = collections.Counter()

    @property
    def num_actors(self) -> int:
        return len(self._slots)

    def close(self) -> None:
        self.cancel_queued()
        for slot in getattr(self, "_slots", ()):
            for future, _ in slot.job or ():
                future.set_exception(WorkerCrashed("the pool was closed during the evaluation"))
            if slot.actor is not None:
                ray.kill(slot.actor)
            slot.actor, slot.ref, slot.job = None, None, None
        self._shutdown()

    # -- internals --

    def _shutdown(self) -> None:
        if self._owns:
            self._owns = False
            if self._temp_dir:
                stop_local_ray(self._temp_dir)
            else:
                ray.shutdown()

    def _dispatch(self) -> None:
        """Split the queue evenly over the idle actors (a share each), as the local pool does."""
        idle = [slot for slot in self._slots if slot.job is None]
        for i, slot in enumerate(idle):
            share = math.ceil(len(self._queue) / (len(idle) - i)) if self._batched else 1
            job = []
            while len(job) < share and self._queue:
                future, candidate = self._queue.popleft()
                if future.running() or future.set_running_or_notify_cancel():  # running: put back after a crash
                    job.append((future, candidate))
            if job:
                if slot.actor is None:
                    slot.actor = self._actor_class.remote(self._objective)
                slot.job, slot.ref = job, slot.actor.evaluate.remote([c for _, c in job])

    def _wait(self) -> None:
        busy = {slot.ref: slot for slot in self._slots if slot.job is not None}
        if not busy:
            raise RuntimeError("as_completed() was given futures this pool does not run")
        ready, _ = ray.wait(list(busy), num_returns=1)
        for ref in ready:
            self._collect(busy[ref])

    def _collect(self, slot: _Slot) -> None:
        job, slot.job, ref, slot.ref = slot.job, None, slot.ref, None
        try:
            answers = ray.get(ref)
        except RayActorError as err:
            slot.actor = None  # dead: a fresh actor takes its place at the next dispatch
            self._requeue(job, err)
            return
        except Exception as err:  # the call itself failed (e.g. the objective could not be unpickled)
            answers = [("error", f"{type(err).__name__}: {err}")] * len(job)
        for (future, _), (kind, payload) in zip(job, answers):
            if kind == "ok":
                future.set_result(payload)
            else:
                future.set_exception(EvaluationError(payload))

    def _requeue(self, job: list[tuple[Future, Candidate]], err: Exception) -> None:
        """Put a dead actor's share back at the front of the queue (in order), or fail it after MAX_CRASHES."""
        for future, candidate in reversed(job):
            self._crashes[candidate.id] += 1
            if self._crashes[candidate.id] >= MAX_CRASHES:
                future.set_exception(WorkerCrashed(f"{MAX_CRASHES} Ray actors died evaluating {candidate.id}: "
                                                   f"{type(err).__name__}"))
            else:
                self._queue.appendleft((future, candidate))
