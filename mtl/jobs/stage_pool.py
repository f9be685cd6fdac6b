"""Run independent nested runs (pipeline stages) side by side, one worker process each.

    results = run_stages(stages, exp_root, workers=2, device=ctx.device, stop=ctx.stop, log=ctx.log)

Each stage is exactly the nested run `run_nested` would start in-process (same folder, options, seeds,
so the same numbers), run in a spawned worker of `mtl.meta.workers.LocalProcessPool`. Stops:
- SIGINT / SIGTERM to the parent is passed on to the workers as SIGTERM; each running stage checkpoints
  and ends as "interrupted", stages not started are not started, and the parent raises `Interrupted`.
- A worker whose parent dies (SIGKILL) notices at its next step, checkpoints and exits, so nothing runs
  on beside the `--continue` that follows; every stage resumes from its own checkpoint.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtl.errors import UserError
from mtl.jobs.nested import run_nested
from mtl.meta.optimizers.base import Candidate
from mtl.meta.pool import EvaluationError
from mtl.meta.workers import LocalProcessPool
from mtl.util.signals import Interrupted, OrphanAwareStopFlag, StopFlag


@dataclass
class Stage:
    """One nested run: job name, its validated options, run name under the experiment root."""

    job: str
    opts: Any
    exp_id: str
    note: str = ""


class _StageRunner:
    """The objective the pool's workers call: run stage number `params["index"]` (picklable)."""

    def __init__(self, stages: list[Stage], exp_root: str, threads: int):
        self.stages, self.exp_root, self.threads = stages, exp_root, threads

    def __call__(self, params: dict, seed: int) -> dict:
        stage = self.stages[params["index"]]
        if self.threads:
            torch.set_num_threads(self.threads)
        _log_to_stderr()
        stop = OrphanAwareStopFlag().install()
        try:
            return {"results": run_nested(stage.job, stage.opts, self.exp_root, stage.exp_id, stop=stop,
                                          note=stage.note)}
        except Interrupted as stopped:
            return {"interrupted": stopped.signum}
        except UserError as err:
            return {"user_error": str(err)}
        finally:
            stop.uninstall()


def run_stages(stages: list[Stage], exp_root: str | Path, *, workers: int, device: torch.device, stop: StopFlag,
               log: logging.Logger, threads: int = 0) -> list[dict]:
    """Run `stages` on `workers` processes; their results in order. Raises like `run_nested` would:
    UserError for a stage's user error, Interrupted when stopped, RuntimeError for a stage that failed."""
    runner = _StageRunner(stages, str(exp_root), threads)
    pool = LocalProcessPool(runner, devices=_devices(device, workers))
    futures = {pool.submit(Candidate(s.exp_id, 0, i, {"index": i}, 0)): i for i, s in enumerate(stages)}
    results: list[dict | None] = [None] * len(stages)
    stop.listeners.append(_pass_on(pool))
    try:
        for future in pool.as_completed(list(futures)):
            if stop.requested:
                pool.cancel_queued()
            if future.cancelled():
                continue
            stage = stages[futures[future]]
            outcome = _outcome(stage, future)
            if "interrupted" in outcome:
                pool.cancel_queued()
                stop.signum = stop.signum or outcome["interrupted"]
                continue
            results[futures[future]] = outcome["results"]
            log.info("stage %s done", stage.exp_id)
    finally:
        stop.listeners.pop()
        pool.close()
    stop.raise_if_requested()
    return results


def _outcome(stage: Stage, future) -> dict:
    try:
        outcome = future.result()["result"]
    except EvaluationError as err:
        raise RuntimeError(f"stage {stage.exp_id} failed in its worker process (see its log.txt):\n{err}") from None
    if "user_error" in outcome:
        raise UserError(f"stage {stage.exp_id}: {outcome['user_error']}")
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
    """In a worker process: the stage's log lines (prefixed with its name) on stderr, like in-process."""
    from mtl.util.logging import setup_logging

    if not logging.getLogger("mtl").handlers:
        setup_logging()
