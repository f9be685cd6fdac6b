"""Run a job inside its run folder: logging, status.json, signals, error handling, results.json.

Data-parallel (torchrun): rank 0 runs `launch` as one process would; the other ranks `follow`: the same
job on the same checkpoints, writing nothing (no log file, TensorBoard, status, checkpoints or results).
"""

from __future__ import annotations

import errno
import logging
import traceback

from mtl.errors import UserError
from mtl.jobs import Job
from mtl.jobs.context import JobContext
from mtl.train.distributed import SINGLE, Dist
from mtl.train.divergence import Diverged
from mtl.util.checkpoint import CheckpointStore
from mtl.util.device import resolve_device
from mtl.util.logging import setup_logging
from mtl.util.rng import seed_everything
from mtl.util.run_dir import RunDir
from mtl.util.signals import Interrupted, StopFlag
from mtl.util.tensorboard import MetricsWriter

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2


def launch(job: Job, opts, run: RunDir, resuming: bool, resume_command: str, dist: Dist = SINGLE) -> int:
    """Run `job` with `opts` in `run`; returns the process exit status.

    0 done; 2 user error (message printed, no traceback); 1 internal error (traceback in log.txt);
    128 + signal number when SIGINT / SIGTERM stopped it after a checkpoint.
    """
    if not dist.is_main:
        return follow(job, opts, run, resuming, dist)
    log = setup_logging(run.log_path)
    stop = StopFlag().install()
    checkpoints = CheckpointStore(run.checkpoint_dir, opts.keep_checkpoints, job.higher_is_better)
    tb = None
    try:
        latest = checkpoints.latest_step()  # a corrupt index is rebuilt (with a warning) here
        tb = MetricsWriter(run.path, purge_step=latest if resuming else None)
        run.write_status("running", job=job.name)
        log.info("%s run %s (%s) in %s", "continuing" if resuming else "starting", run.exp_id, job.name, run.path)
        if resuming and latest is None:
            log.warning("no checkpoint in %s: starting from step 0", run.checkpoint_dir)
        if dist.active:
            log.info("data-parallel over %d processes (rank 0 writes the run folder)", dist.world_size)
        device = dist.device_for(resolve_device(opts.device))
        seed_everything(opts.seed)
        ctx = JobContext(opts, run, device, log, tb, checkpoints, stop, resuming, dist)
        dist.barrier()  # the followers read the checkpoints once rank 0 has checked their index
        results = job.run(ctx)
        run.write_results(results)
        run.write_status("done", job=job.name)
        log.info("done: results in %s", run.results_path)
        return EXIT_OK
    except Interrupted as stopped:
        _final_status(run, log, "interrupted", job=job.name, signal=str(stopped))
        log.warning("stopped by %s after saving a checkpoint. Resume with:\n  %s", stopped, resume_command)
        return 128 + stopped.signum
    except Diverged as err:
        _final_status(run, log, "diverged", job=job.name, error=str(err))
        last = checkpoints.latest_step()
        log.error("%s\nThe last good checkpoint is %s; continue it with, e.g.:\n  %s --lr SMALLER", err,
                  f"step {last}" if last is not None else "none (the run starts again from step 0)",
                  resume_command)
        return EXIT_INTERNAL
    except UserError as err:
        _final_status(run, log, "failed", job=job.name, error=str(err), user_error=True)
        log.error("%s", err)
        return EXIT_USER
    except KeyboardInterrupt:
        _final_status(run, log, "interrupted", job=job.name, signal="SIGINT (twice)")
        log.warning("stopped at once (second Ctrl-C). Resume from the last checkpoint with:\n  %s",
                    resume_command)
        return 130
    except OSError as err:
        if err.errno not in _DISK_ERRORS:
            return _internal(run, log, job, err)
        _final_status(run, log, "failed", job=job.name, error=str(err), user_error=True)
        log.error("cannot write in %s: %s. Free some space (or make it writable), then continue with:\n  %s",
                  run.path, err.strerror or err, resume_command)
        return EXIT_USER
    except Exception as err:  # noqa: BLE001 - internal error: keep the traceback, mark the run failed
        if dist.active:  # e.g. another rank died (the collective's peer is gone): the checkpoints are intact
            log.error("data-parallel run stopped: %s\nContinue from the last checkpoint with:\n  %s",
                      str(err).splitlines()[0][:300], resume_command)
        return _internal(run, log, job, err)
    finally:
        if tb is not None:
            _quietly(tb.close)
        stop.uninstall()


def follow(job: Job, opts, run: RunDir, resuming: bool, dist: Dist) -> int:
    """A data-parallel rank other than 0: the job's steps in lockstep with rank 0, no files written.

    Exit statuses as `launch`; its console shows warnings and errors only (rank 0 logs the run).
    """
    log = logging.getLogger(f"mtl.rank{dist.rank}")
    log.setLevel(logging.WARNING)
    stop = StopFlag().install()
    try:
        dist.barrier()
        device = dist.device_for(resolve_device(opts.device))
        seed_everything(opts.seed)
        checkpoints = CheckpointStore(run.checkpoint_dir, opts.keep_checkpoints, job.higher_is_better)
        job.run(JobContext(opts, run, device, log, _NoMetrics(), checkpoints, stop, resuming, dist))
        return EXIT_OK
    except Interrupted as stopped:
        return 128 + stopped.signum
    except UserError as err:
        log.error("rank %d: %s", dist.rank, err)
        return EXIT_USER
    except Diverged:
        return EXIT_INTERNAL  # rank 0 says so, with the same message
    finally:
        stop.uninstall()


class _NoMetrics:
    """The TensorBoard writer of ranks other than 0: writes nothing."""

    def task_scalar(self, *args) -> None:
        pass

    scalar = task_scalar

    def flush(self) -> None:
        pass

    close = flush


# Disk full, quota, read-only file system, permission: the machine, not the code.
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _internal(run: RunDir, log: logging.Logger, job: Job, err: BaseException) -> int:
    summary = f"{type(err).__name__}: {err}"
    _final_status(run, log, "failed", job=job.name, error=summary)
    _log_traceback(log, err)
    log.error("internal error (%s); the traceback is in %s", summary, run.log_path)
    return EXIT_INTERNAL


def _final_status(run: RunDir, log: logging.Logger, state: str, **extra) -> None:
    """status.json's last word; when even that cannot be written (disk full), the console says so."""
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
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            try:
                handler.stream.write(text)
                handler.flush()
            except OSError:  # disk full: the summary line on the console still says what happened
                pass
