"""Run a job in its run folder: the one body that main.py, nested runs (pipeline stages, search trials,
proxy-validation trainings) and benchmark children share.

`execute` opens the checkpoints and TensorBoard, marks the run running, seeds, runs the job, writes
results.json and marks the run done. Whatever else ends it, status.json says what ("interrupted",
"diverged", "failed" with the error; user errors and a full disk flagged `user_error`), an internal
error's traceback goes to the run's own log.txt, and the exception goes on to the caller: `launch` turns it
into an exit status, `run_nested` lets it reach the parent job. Data-parallel ranks other than 0 run the
same steps and write nothing.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import traceback
from dataclasses import asdict
from typing import Any

from mtl.errors import UserError
from mtl.jobs import Job
from mtl.runner.context import JobContext
from mtl.runner.stop import active_stop
from mtl.train.distributed import SINGLE, Dist
from mtl.train.divergence import Diverged
from mtl.util.checkpoint import CheckpointStore
from mtl.util.device import resolve_device
from mtl.util.rng import seed_everything
from mtl.util.run_dir import RunDir
from mtl.util.signals import Interrupted, StopFlag
from mtl.util.tensorboard import MetricsWriter

# Disk full, quota, read-only file system, permission: the machine, not the code.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def config_record(job: Job, opts: Any, config: str | None, command: list[str] | None) -> dict[str, Any]:
    """What config.json holds: the job kind, the config it came from, every option, the command."""
    return {"job": job.name, "config": config, "options": asdict(opts), "command": command,
            "written": dt.datetime.now().isoformat(timespec="seconds")}


def execute(job: Job, opts: Any, run: RunDir, *, resuming: bool, log: logging.Logger, stop: StopFlag,
            dist: Dist = SINGLE) -> dict[str, Any]:
    """Run `job` in `run` (its folder and config.json exist); returns its results. Raises what ended it,
    after recording it in status.json (rank 0 only)."""
    writes = dist.is_main
    # constructing the store reads nothing: the followers touch the checkpoints only after the barrier
    checkpoints = CheckpointStore(run.checkpoint_dir, opts.keep_checkpoints, job.higher_is_better)
    tb = NoMetrics()
    try:
        if writes:
            latest = checkpoints.latest_step()  # a corrupt index is rebuilt (with a warning) here
            tb = MetricsWriter(run.path, purge_step=latest if resuming else None)
            run.write_status("running", job=job.name)
            log.info("%s %s run %s in %s", "continuing" if resuming else "starting", job.name, run.exp_id, run.path)
            if resuming and latest is None:
                log.warning("no checkpoint in %s: starting from step 0", run.checkpoint_dir)
        dist.barrier()  # the followers read the checkpoints once rank 0 has checked their index
        device = dist.device_for(resolve_device(opts.device))
        seed_everything(opts.seed)
        with active_stop(stop):
            results = job.run(JobContext(opts, run, device, log, tb, checkpoints, stop, resuming, dist))
        if writes:
            run.write_results(results)
            run.write_status("done", job=job.name)
        return results
    except BaseException as err:
        if writes:
            record_end(run, log, job, err)
        raise
    finally:
        _quietly(tb.close)


def record_end(run: RunDir, log: logging.Logger, job: Job, err: BaseException) -> None:
    """status.json's last word for a run that `err` ended; an internal error's traceback into log.txt."""
    if isinstance(err, Interrupted):
        _final_status(run, log, "interrupted", job=job.name, signal=str(err))
    elif isinstance(err, KeyboardInterrupt):
        _final_status(run, log, "interrupted", job=job.name, signal="SIGINT (twice)")
    elif isinstance(err, Diverged):
        _final_status(run, log, "diverged", job=job.name, error=str(err))
    elif isinstance(err, UserError) or is_disk_error(err):
        _final_status(run, log, "failed", job=job.name, error=str(err), user_error=True)
    else:
        _final_status(run, log, "failed", job=job.name, error=f"{type(err).__name__}: {err}")
        _log_traceback(log, err)


def is_disk_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_ERRORS


class NoMetrics:
    """The TensorBoard writer of data-parallel ranks other than 0: writes nothing."""

    def task_scalar(self, *args) -> None:
        pass

    scalar = task_scalar

    def flush(self) -> None:
        pass

    close = flush


def _final_status(run: RunDir, log: logging.Logger, state: str, **extra) -> None:
    """Write the final status; when even that cannot be written (disk full), the console says so."""
    try:
        run.write_status(state, **extra)
    except OSError as err:
        log.error("could not record status %r in %s (%s); the run is not running any more", state,
                  run.status_path, err)


def _quietly(close) -> None:
    try:
        close()
    except OSError:
        pass


def _log_traceback(log: logging.Logger, err: BaseException) -> None:
    """The traceback into the log files of `log` (not the console, which gets one summary line)."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            try:
                handler.stream.write(text)
                handler.flush()
            except OSError:  # disk full: the summary line on the console still says what happened
                pass
