"""Run child jobs (pipeline stages, benchmark runs) in this process or in worker processes.

    results = run_children(children, exp_root, stop=ctx.stop, log=ctx.log, workers=2, device=ctx.device)

Each child is exactly the nested run `run_nested` starts (same folder, options and seeds, so the same
numbers). Where it runs:
- `workers=0`: one after another in this process (a child's exceptions reach the caller as raised);
- `workers=N`: on the local worker pool the searches evaluate on (mtl/meta/workers.py), N spawned
  processes, each child in one; `fresh=True` starts a new process per child, so that its time and peak
  memory are its own (the methods benchmark). (Ray actors are not offered for child runs: tried, a
  five-step toy child took five minutes in an actor, cause not found.)
Stops:
- SIGINT / SIGTERM to the parent is passed on to the workers as SIGTERM; each running child checkpoints
  and ends as "interrupted", children not started are not started, and the parent raises `Interrupted`.
- A worker whose parent dies (SIGKILL) notices at its next step, checkpoints and exits, so nothing
  runs on beside the `--continue` that follows; every child resumes from its own checkpoint.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtl.errors import UserError
from mtl.meta.pool import EvaluationError, Work
from mtl.meta.workers import LocalProcessPool
from mtl.runner.nested import nested_done, run_nested
from mtl.util.atomic import read_json
from mtl.util.run_dir import RunDir, resolve_run_path
from mtl.util.signals import Interrupted, OrphanAwareStopFlag, StopFlag


@dataclass
class Child:
    """One child run: job name, its validated options, run name under the experiment root."""

    job: str
    opts: Any
    exp_id: str
    note: str = ""


def run_children(children: list[Child], exp_root: str | Path, *, stop: StopFlag, log: logging.Logger,
                 workers: int = 0, device: torch.device = torch.device("cpu"), threads: int = 0,
                 fresh: bool = False, keep_going: bool = False) -> list[dict]:
    """Run `children` (see the module docstring for where); their results in order.

    A child's user error raises UserError and a child that failed raises RuntimeError; with `keep_going`
    either makes its entry {"failed": message} and the others run on. Raises Interrupted when stopped.
    """
    results: list[dict | None] = [None] * len(children)
    for i, child in enumerate(children):
        results[i] = finished_results(child, exp_root)
        if results[i] is not None:
            log.info("%s: done before, reusing its results", child.exp_id)
    to_run = [i for i, r in enumerate(results) if r is None]
    if workers <= 0:
        for i in to_run:
            results[i] = _in_process(children[i], str(exp_root), stop, keep_going)
        return results
    if not to_run:
        return results
    stop.raise_if_requested()  # a stop that came before this call: start nothing
    runner = _ChildRunner(children, str(exp_root), threads)
    workers = min(workers, len(to_run))
    pool = LocalProcessPool(runner, devices=_devices(device, workers), fresh_processes=fresh)
    futures = {pool.submit(Work(children[i].exp_id, {"index": i})): i for i in to_run}
    stop.listeners.append(_pass_on(pool))
    try:
        for future in pool.as_completed(list(futures)):
            if stop.requested:
                pool.cancel_queued()
            if future.cancelled():
                continue
            child = children[futures[future]]
            outcome = _outcome(child, future, keep_going)
            if "interrupted" in outcome:
                pool.cancel_queued()
                stop.signum = stop.signum or outcome["interrupted"]
                continue
            results[futures[future]] = outcome.get("results", outcome)
            log.info("%s %s", child.exp_id, "failed" if "failed" in outcome else "done")
    finally:
        stop.listeners.pop()
        pool.close()
    stop.raise_if_requested()
    return results


def finished_results(child: Child, exp_root: str | Path) -> dict | None:
    """The results of a child that is done with these very options (nothing to run), else None."""
    if not nested_done(child.job, child.opts, exp_root, child.exp_id):
        return None
    return read_json(RunDir(resolve_run_path(exp_root, child.exp_id), child.exp_id).results_path)


def _in_process(child: Child, exp_root: str, stop: StopFlag, keep_going: bool) -> dict:
    stop.raise_if_requested()
    try:
        return run_nested(child.job, child.opts, exp_root, child.exp_id, stop=stop, note=child.note)
    except Interrupted:
        raise
    except Exception as err:  # noqa: BLE001 - keep_going: the child's status.json and log.txt say why
        if not keep_going:
            raise
        return {"failed": f"{type(err).__name__}: {err}"}


class _ChildRunner:
    """The objective the pool's workers call: run child number `params["index"]` (picklable)."""

    def __init__(self, children: list[Child], exp_root: str, threads: int):
        self.children, self.exp_root, self.threads = children, exp_root, threads

    def __call__(self, params: dict, seed: int) -> dict:
        child = self.children[params["index"]]
        if self.threads:
            torch.set_num_threads(self.threads)
        _log_to_stderr()
        stop = OrphanAwareStopFlag().install()
        try:
            return {"results": run_nested(child.job, child.opts, self.exp_root, child.exp_id, stop=stop,
                                          note=child.note)}
        except Interrupted as stopped:
            return {"interrupted": stopped.signum}
        except UserError as err:
            return {"user_error": str(err)}
        finally:
            stop.uninstall()


def _outcome(child: Child, future, keep_going: bool) -> dict:
    try:
        outcome = future.result()["result"]
    except EvaluationError as err:
        message = f"{child.exp_id} failed in its worker process (see its log.txt):\n{err}"
        if keep_going:
            return {"failed": message}
        raise RuntimeError(message) from None
    if "user_error" in outcome:
        if keep_going:
            return {"failed": f"UserError: {outcome['user_error']}"}
        raise UserError(f"{child.exp_id}: {outcome['user_error']}")
    return outcome


def _pass_on(pool: LocalProcessPool):
    # SIGTERM, not the signal itself: a worker took the terminal's Ctrl-C already, and a second SIGINT
    # would stop it at once without a checkpoint.
    return lambda _signum: pool.signal_workers(signal.SIGTERM)


def _devices(device: torch.device, workers: int) -> list[str]:
    """One entry per worker: CPU workers, or the visible GPUs in turn."""
    if device.type != "cuda":
        return ["cpu"] * workers
    count = max(torch.cuda.device_count(), 1)
    return [f"cuda:{i % count}" for i in range(workers)]


def _log_to_stderr() -> None:
    """In a worker process: the child's log lines (prefixed with its name) on stderr, like in-process."""
    from mtl.util.logging import setup_logging

    if not logging.getLogger("mtl").handlers:
        setup_logging()
