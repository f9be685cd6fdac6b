"""Worker pools that evaluate candidates in-process and in local processes (one per GPU).

The protocol they implement and `make_pool` are in mtl/meta/pool.py; the Ray pool in mtl/meta/ray_pool.py.
"""

from __future__ import annotations

import collections
import copy
import math
import os
import pickle
import socket
import sys
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import connection, get_context
from typing import Any, Iterable, Iterator

from mtl.meta.optimizers.base import Candidate
from mtl.meta.pool import (BACKENDS, DEVICE_ENV, EvaluationError, PoolBase, QueuedPool, WorkerCrashed,
                           evaluate_share, run_candidate)

# -- in-process -----------------------------------------------------------------------------


@BACKENDS.register("inprocess")
class InProcessPool(PoolBase):
    """Evaluates in the calling process, in submission order, when awaited.

    An objective with `evaluate_batch(params_list, seeds) -> list[dict]` gets all awaited candidates
    in one call (population evaluation on one device: shared batches, stacked models); otherwise
    candidates run one at a time.
    """

    def __init__(self, objective, worker: str = "inprocess"):
        self.objective = objective
        self.worker = f"{worker}:{os.getpid()}"
        self._pending: dict[Future, Candidate] = {}

    def submit(self, candidate: Candidate) -> Future:
        future: Future = Future()
        self._pending[future] = candidate
        return future

    def as_completed(self, futures: Iterable[Future]) -> Iterator[Future]:
        futures = list(futures)
        if hasattr(self.objective, "evaluate_batch"):
            self._run_batch([f for f in futures if f in self._pending])
        for future in futures:
            candidate = self._pending.pop(future, None)
            if candidate is not None and future.set_running_or_notify_cancel():
                try:
                    future.set_result(run_candidate(self.objective, candidate, self.worker))
                except Exception:
                    future.set_exception(EvaluationError(traceback.format_exc()))
            yield future

    def _run_batch(self, futures: list[Future]) -> None:
        candidates = [self._pending.pop(f) for f in futures]
        running = [(f, c) for f, c in zip(futures, candidates) if f.set_running_or_notify_cancel()]
        if not running:
            return
        start = time.perf_counter()
        try:
            results = self.objective.evaluate_batch([copy.deepcopy(c.params) for _, c in running],
                                                    [c.seed for _, c in running])
            if len(results) != len(running):
                raise ValueError(f"evaluate_batch returned {len(results)} results for {len(running)} candidates")
        except Exception:
            error = traceback.format_exc()
            for future, _ in running:
                future.set_exception(EvaluationError(error))
            return
        share = (time.perf_counter() - start) / len(running)  # per-candidate share of the batch's time
        for (future, _), result in zip(running, results):
            future.set_result({"result": result, "worker": self.worker, "duration": share})

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()


# -- local processes ------------------------------------------------------------------------


@dataclass
class _Slot:
    device: str
    process: Any = None
    conn: Any = None
    job: list[tuple[Future, Candidate]] | None = None  # the candidates the worker is evaluating


@BACKENDS.register("local")
class LocalProcessPool(QueuedPool):
    """One spawned worker process per device; a crashed worker fails its job and is restarted.

    A population objective (one with `evaluate_batch`) gets the waiting candidates split evenly
    over the idle workers, each share in one `evaluate_batch` call (stacked on that worker's
    device); other objectives get one candidate per worker at a time.

    Args:
        objective: picklable objective, sent once to each worker.
        devices: one entry per worker ("cuda:1", "cpu", ...). Default: every visible GPU, else
            `num_workers` (default: CPU count) CPU workers.
        num_workers: number of CPU workers when no devices are given and no GPU is visible.
        fresh_processes: a new worker process for every job (its time and peak memory are its own).
    """

    def __init__(self, objective, devices: list[str] | None = None, num_workers: int | None = None,
                 fresh_processes: bool = False):
        self._batched = hasattr(objective, "evaluate_batch")
        self._fresh = fresh_processes
        self._payload = pickle.dumps(objective)
        devices = devices or _default_devices(num_workers)
        cpu_workers = sum(d == "cpu" for d in devices)
        self._threads = max(1, (os.cpu_count() or 1) // max(cpu_workers, 1))
        self._slots = [_Slot(d) for d in devices]
        self._queue: collections.deque[tuple[Future, Candidate]] = collections.deque()
        self._context = get_context("spawn")

    def close(self) -> None:
        self.cancel_queued()
        for slot in self._slots:
            if slot.process is not None:
                _stop(slot)

    def signal_workers(self, signum: int) -> None:
        """Send `signum` to every live worker process (e.g. pass SIGTERM on so they checkpoint)."""
        for slot in self._slots:
            if slot.process is not None and slot.process.is_alive():
                os.kill(slot.process.pid, signum)

    # -- internals --

    def _dispatch(self) -> None:
        idle = [slot for slot in self._slots if slot.job is None]
        for i, slot in enumerate(idle):
            share = math.ceil(len(self._queue) / (len(idle) - i)) if self._batched else 1
            job = []
            while len(job) < share and self._queue:
                future, candidate = self._queue.popleft()
                if future.set_running_or_notify_cancel():
                    job.append((future, candidate))
            if job:
                self._send(slot, job)

    def _send(self, slot: _Slot, job: list[tuple[Future, Candidate]]) -> None:
        if slot.process is None or not slot.process.is_alive():
            self._start(slot)
        slot.job = job
        try:
            slot.conn.send([candidate for _, candidate in job])
        except OSError:
            self._crashed(slot)

    def _start(self, slot: _Slot) -> None:
        if slot.conn is not None:  # the previous process died while idle
            slot.conn.close()
            slot.conn = None
        parent, child = self._context.Pipe()
        threads = self._threads if slot.device == "cpu" else 0
        slot.process = self._context.Process(target=_worker_main,
                                             args=(child, slot.device, threads, self._payload, self._fresh),
                                             daemon=True, name=f"mtl-worker-{slot.device}")
        slot.process.start()
        child.close()
        slot.conn = parent

    def _wait(self) -> None:
        """Block until a busy worker answers or dies; settle its future."""
        busy = [s for s in self._slots if s.job is not None]
        if not busy:
            raise RuntimeError("as_completed() was given futures this pool does not run")
        ready = set(connection.wait([s.conn for s in busy] + [s.process.sentinel for s in busy]))
        for slot in busy:
            if slot.conn in ready or slot.process.sentinel in ready:
                self._collect(slot)

    def _collect(self, slot: _Slot) -> None:
        try:
            if slot.conn.poll():
                answers = slot.conn.recv()
                job, slot.job = slot.job, None
                for (future, _), (kind, payload) in zip(job, answers):
                    if kind == "ok":
                        future.set_result(payload)
                    else:
                        future.set_exception(EvaluationError(payload))
                if self._fresh:  # the worker exits after its one job (idle now: _stop waits for that)
                    _stop(slot)
                return
        except (EOFError, OSError):
            if slot.job is None:  # answered; only its exit went wrong
                return
        self._crashed(slot)

    def _crashed(self, slot: _Slot) -> None:
        if slot.process.is_alive():  # its pipe broke but it lingers: make sure it is gone
            slot.process.kill()
        slot.process.join()
        code = slot.process.exitcode
        job = slot.job
        slot.conn.close()
        slot.job, slot.process, slot.conn = None, None, None
        for future, candidate in job:
            future.set_exception(WorkerCrashed(f"worker on {slot.device} exited with code {code} "
                                               f"while evaluating {candidate.id}"))


def _default_devices(num_workers: int | None) -> list[str]:
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    if gpus:
        return [f"cuda:{i}" for i in range(gpus)]
    return ["cpu"] * (num_workers or os.cpu_count() or 1)


def _stop(slot: _Slot) -> None:
    """Ask an idle worker to exit; kill a busy one (its job is abandoned)."""
    if slot.job is None:
        try:
            slot.conn.send(None)
        except OSError:
            pass
        slot.process.join(timeout=10)
    if slot.process.is_alive():
        slot.process.kill()
        slot.process.join()
    for future, _ in slot.job or ():
        future.set_exception(WorkerCrashed("the pool was closed during the evaluation"))
    slot.conn.close()
    slot.job, slot.process, slot.conn = None, None, None


def _pin_device(device: str, threads: int) -> None:
    """Make `device` the worker's only device before anything initializes CUDA or thread pools."""
    if device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        os.environ["CUDA_VISIBLE_DEVICES"] = index
        device = "cuda:0"
    os.environ[DEVICE_ENV] = device
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


def _worker_main(conn, device: str, threads: int, payload: bytes, one_job: bool = False) -> None:
    """Worker process loop: receive a list of candidates, send one ("ok", outcome) or ("error",
    traceback) per candidate; None ends, and so does the first job's answer when `one_job`."""
    _pin_device(device, threads)
    worker = f"{socket.gethostname()}:{os.getpid()}:{device}"
    try:
        objective, load_error = pickle.loads(payload), None
    except Exception:
        objective, load_error = None, f"could not load the objective in the worker:\n{traceback.format_exc()}"
    while True:
        try:
            candidates = conn.recv()
        except EOFError:  # parent is gone
            return
        if candidates is None:
            return
        if load_error:
            conn.send([("error", load_error)] * len(candidates))
        else:
            conn.send(evaluate_share(objective, candidates, worker))
        if one_job:
            return
