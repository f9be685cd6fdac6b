"""Ray worker pool: evaluations as Ray tasks on a running cluster, or on a local one it starts.

Ray on a shared machine (DESIGN.md): stay on loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), bound
the object store, use a short temp dir (Unix socket paths stop at ~107 bytes) and remove it after
shutdown, no dashboard. On a multi-machine cluster, `mtl` must be importable on every node.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from concurrent.futures import Future
from concurrent.futures import as_completed as _futures_as_completed
from pathlib import Path
from typing import Any, Iterable, Iterator

import ray

from mtl.meta.optimizers.base import Candidate
from mtl.meta.workers import DEVICE_ENV, PoolBase, run_candidate


def start_local_ray(num_cpus: int | None = None, num_gpus: int | None = None,
                    object_store_memory: int = 512 * 2**20, temp_dir: str | None = None) -> str:
    """Start a single-machine Ray cluster that stays on loopback; returns its temp dir (remove after use).

    See DESIGN.md "Ray on a shared machine": loopback only, bounded object store, short socket paths,
    no dashboard. Workers find `mtl` through PYTHONPATH.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    root = str(Path(__file__).resolve().parents[2])
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, paths)])
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory,
             _temp_dir=temp_dir, include_dashboard=False)
    return temp_dir


def stop_local_ray(temp_dir: str | None) -> None:
    """Shut Ray down and remove the cluster's temp dir."""
    ray.shutdown()
    if temp_dir:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ray_evaluate(objective, candidate: Candidate) -> dict:
    gpus = ray.get_gpu_ids()
    os.environ[DEVICE_ENV] = "cuda:0" if gpus else "cpu"
    return run_candidate(objective, candidate, f"ray:{socket.gethostname()}:{os.getpid()}")


class RayPool(PoolBase):
    """Evaluations as Ray tasks. Uses the running Ray session if any, else `address`, else starts a local one.

    Args:
        objective: picklable objective, put in the object store once.
        address: cluster to join ("auto", "ray://host:10001", ...); None: start a local cluster.
        num_cpus / num_gpus / object_store_memory: for a local cluster.
        cpus_per_eval / gpus_per_eval: resources each evaluation reserves.
    """

    def __init__(self, objective, address: str | None = None, num_cpus: int | None = None,
                 num_gpus: int | None = None, object_store_memory: int = 512 * 2**20,
                 cpus_per_eval: float = 1, gpus_per_eval: float = 0):
        self._temp_dir, self._owns = None, False
        if not ray.is_initialized():
            if address:
                ray.init(address=address)
            else:
                self._temp_dir = start_local_ray(num_cpus, num_gpus, object_store_memory)
            self._owns = True
        self._remote = ray.remote(num_cpus=cpus_per_eval, num_gpus=gpus_per_eval, max_retries=0)(_ray_evaluate)
        self._objective = ray.put(objective)
        self._refs: dict[Future, Any] = {}

    def submit(self, candidate: Candidate) -> Future:
        ref = self._remote.remote(self._objective, candidate)
        future = ref.future()
        self._refs[future] = ref
        return future

    def as_completed(self, futures: Iterable[Future]) -> Iterator[Future]:
        for future in _futures_as_completed(list(futures)):
            self._refs.pop(future, None)
            yield future

    def close(self) -> None:
        for ref in self._refs.values():
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or the cluster is gone: nothing to cancel
                pass
        self._refs.clear()
        if self._owns:
            if self._temp_dir:
                stop_local_ray(self._temp_dir)
            else:
                ray.shutdown()
