"""Run a job as the process's own: logging, signals and `execute`, with what ended it as the exit status.

main.py calls `launch` for every run; data-parallel (torchrun) ranks other than 0 run the same job on the
same checkpoints, writing nothing (no log file, TensorBoard, status, checkpoints or results).
"""

from __future__ import annotations

import logging

from mtl.errors import UserError
from mtl.jobs import Job
from mtl.runner.execute import execute, is_disk_error
from mtl.train.distributed import SINGLE, Dist
from mtl.train.divergence import Diverged
from mtl.util.checkpoint import CheckpointStore
from mtl.util.logging import setup_logging
from mtl.util.run_dir import RunDir
from mtl.util.signals import Interrupted, StopFlag

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2


def launch(job: Job, opts, run: RunDir, resuming: bool, resume_command: str, dist: Dist = SINGLE) -> int:
    """Run `job` with `opts` in `run`; returns the process exit status.

    0 done; 2 user error (message printed, no traceback); 1 internal error (traceback in log.txt);
    128 + signal number when SIGINT / SIGTERM stopped it after a checkpoint.
    """
    log = setup_logging(run.log_path) if dist.is_main else _follower_log(dist)
    stop = StopFlag().install()
    try:
        if dist.active and dist.is_main:
            log.info("data-parallel over %d processes (rank 0 writes the run folder)", dist.world_size)
        execute(job, opts, run, resuming=resuming, log=log, stop=stop, dist=dist)
        if dist.is_main:
            log.info("done: results in %s", run.results_path)
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - each ending becomes an exit status
        if not dist.is_main:
            return _follower_exit(err, dist, log)
        return _exit_status(err, run, log, resume_command, dist)
    finally:
        stop.uninstall()


def _exit_status(err: BaseException, run: RunDir, log: logging.Logger, resume_command: str, dist: Dist) -> int:
    """Say what ended the run (status.json says it already) and what to do; its exit status."""
    if isinstance(err, Interrupted):
        log.warning("stopped by %s after saving a checkpoint. Resume with:\n  %s", err, resume_command)
        return 128 + err.signum
    if isinstance(err, KeyboardInterrupt):
        log.warning("stopped at once (second Ctrl-C). Resume from the last checkpoint with:\n  %s", resume_command)
        return 130
    if isinstance(err, Diverged):
        last = CheckpointStore(run.checkpoint_dir).latest_step()
        log.error("%s\nThe last good checkpoint is %s; continue it with, e.g.:\n  %s --lr SMALLER", err,
                  f"step {last}" if last is not None else "none (the run starts again from step 0)",
                  resume_command)
        return EXIT_INTERNAL
    if isinstance(err, UserError):
        log.error("%s", err)
        return EXIT_USER
    if is_disk_error(err):
        log.error("cannot write in %s: %s. Free some space (or make it writable), then continue with:\n  %s",
                  run.path, err.strerror or err, resume_command)
        return EXIT_USER
    if dist.active:  # e.g. another rank died (the collective's peer is gone): the checkpoints are intact
        log.error("data-parallel run stopped: %s\nContinue from the last checkpoint with:\n  %s",
                  str(err).splitlines()[0][:300] if str(err) else type(err).__name__, resume_command)
    log.error("internal error (%s: %s); the traceback is in %s", type(err).__name__, err, run.log_path)
    return EXIT_INTERNAL


def _follower_log(dist: Dist) -> logging.Logger:
    """A rank other than 0: its console shows warnings and errors only (rank 0 logs the run)."""
    log = logging.getLogger(f"mtl.rank{dist.rank}")
    log.setLevel(logging.WARNING)
    return log


def _follower_exit(err: BaseException, dist: Dist, log: logging.Logger) -> int:
    """A follower's exit status (rank 0 says what happened); an internal error keeps its traceback."""
    if isinstance(err, Interrupted):
        return 128 + err.signum
    if isinstance(err, UserError):
        log.error("rank %d: %s", dist.rank, err)
        return EXIT_USER
    if isinstance(err, Diverged):
        return EXIT_INTERNAL  # rank 0 says so, with the same message
    raise err
