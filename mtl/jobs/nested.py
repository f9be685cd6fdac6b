"""Run a job as a nested run (exp/<parent>/<stage>) inside the current process, like main.py would.

Pipelines and objectives that train use it instead of subprocesses. A nested run has its own run
folder (config.json, status.json, log.txt, checkpoints/, events, results.json) and is:
- skipped when it is done with the same options (its results.json is returned);
- continued from its own checkpoints when it exists but is not done (killed, interrupted, failed),
  or when only resume-safe options changed (e.g. more rounds, a larger search budget);
- refused, with a clear error, when options that shape its results changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from pathlib import Path
from typing import Any, Iterator

from mtl.config.options import build_options, option_fields
from mtl.errors import UserError
from mtl.jobs import get_job
from mtl.jobs.context import JobContext
from mtl.util.atomic import read_json
from mtl.train.divergence import Diverged
from mtl.util.checkpoint import CheckpointStore
from mtl.util.device import resolve_device
from mtl.util.rng import seed_everything
from mtl.util.run_dir import RunDir, resolve_run_path
from mtl.util.signals import Interrupted, StopFlag
from mtl.util.tensorboard import MetricsWriter

_active_stop: list[StopFlag] = []  # the stop flag of the job running in this process (innermost last)


@contextlib.contextmanager
def active_stop(flag: StopFlag) -> Iterator[None]:
    """Make `flag` the one nested runs started in this process (e.g. by an objective) poll."""
    _active_stop.append(flag)
    try:
        yield
    finally:
        _active_stop.remove(flag)


def current_stop() -> StopFlag:
    """The stop flag of the enclosing job, or a fresh one (never set) in a worker process."""
    return _active_stop[-1] if _active_stop else StopFlag()


def nested_status(exp_root: str | Path, exp_id: str) -> str:
    """'done', 'running', 'failed', 'interrupted', 'unknown' or 'missing' for a nested run."""
    run = RunDir(resolve_run_path(exp_root, exp_id), exp_id)
    return run.read_status().get("state", "unknown") if run.exists() else "missing"


def nested_done(job_name: str, opts: Any, exp_root: str | Path, exp_id: str) -> bool:
    """Whether `run_nested` would just return the saved results (done, with these very options)."""
    run = RunDir(resolve_run_path(exp_root, exp_id), exp_id)
    try:
        return run.exists() and _finished(run, _saved_options(get_job(job_name), run), dataclasses.asdict(opts))
    except UserError:
        return False


def run_nested(job_name: str, opts: Any, exp_root: str | Path, exp_id: str, *, stop: StopFlag | None = None,
               note: str = "") -> dict[str, Any]:
    """Run job `job_name` with options `opts` as run `exp_id` under `exp_root`; returns its results.

    Args:
        job_name: a registered job kind ("train", "search", ...).
        opts: that job's options (validated dataclass).
        exp_root: the experiment root (exp/).
        exp_id: the nested run name, e.g. "demo/teachers/digits".
        stop: the enclosing job's stop flag (SIGINT / SIGTERM); default: `current_stop()`.
        note: recorded as the run's "config" in config.json (e.g. "pipeline demo").

    Raises:
        UserError: the run exists with other options that are not resume-safe.
        Interrupted: a stop was requested (the nested run checkpointed and is marked interrupted).
    """
    job = get_job(job_name)
    run = RunDir(resolve_run_path(exp_root, exp_id), exp_id)
    options = dataclasses.asdict(opts)
    resuming = run.exists() and not run.failed_before_start()
    if resuming:
        saved = _saved_options(job, run)
        _check_same_run(job, saved, options, run)
        if _finished(run, saved, options):
            return read_json(run.results_path)
        run.lock()
    else:
        opts.check_inputs()
        run.create()
    try:
        run.write_config({"job": job.name, "config": note or "nested", "options": options,
                          "command": None, "written": dt.datetime.now().isoformat(timespec="seconds")})
        return _launch(job, opts, run, resuming, stop or current_stop())
    finally:
        run.unlock()


def _finished(run: RunDir, saved: dict, options: dict) -> bool:
    """Done, with results, and started with exactly `options`: nothing to run."""
    return saved == options and run.read_status().get("state") == "done" and run.results_path.exists()


def _saved_options(job, run: RunDir) -> dict:
    """The run's saved options, read like main.py --continue does (options added since take their defaults)."""
    saved = run.read_config()
    if saved.get("job") != job.name:
        raise UserError(f"{run.path} holds a {saved.get('job')!r} run, not {job.name!r}; move it aside or pick "
                        "another run name.")
    return dataclasses.asdict(build_options(job.options_cls, saved["options"], f"{run.config_path}"))


def _check_same_run(job, saved: dict, options: dict, run: RunDir) -> None:
    fields = option_fields(job.options_cls)
    changed = sorted(k for k in options if saved.get(k) != options[k])
    unsafe = [k for k in changed if not fields[k].metadata.get("resume_safe")]
    if unsafe:
        raise UserError(f"{run.exp_id} was started with other settings ({', '.join(unsafe)} differ), which cannot "
                        f"change on a continue. Move {run.path} aside to redo it, or use another run name.")


def _launch(job, opts, run: RunDir, resuming: bool, stop: StopFlag) -> dict[str, Any]:
    log, handler = _run_logger(run)
    checkpoints = CheckpointStore(run.checkpoint_dir, opts.keep_checkpoints, job.higher_is_better)
    tb = MetricsWriter(run.path, purge_step=checkpoints.latest_step() if resuming else None)
    run.write_status("running", job=job.name)
    log.info("%s %s run in %s", "continuing" if resuming else "starting", job.name, run.path)
    if resuming and checkpoints.latest_step() is None:
        log.warning("no checkpoint in %s: starting from step 0", run.checkpoint_dir)
    try:
        device = resolve_device(opts.device)
        seed_everything(opts.seed)
        with active_stop(stop):
            results = job.run(JobContext(opts, run, device, log, tb, checkpoints, stop, resuming))
        run.write_results(results)
        run.write_status("done", job=job.name)
        return results
    except Interrupted as stopped:
        run.write_status("interrupted", job=job.name, signal=str(stopped))
        raise
    except Diverged as err:
        run.write_status("diverged", job=job.name, error=str(err))
        raise
    except BaseException as err:
        run.write_status("failed", job=job.name, error=f"{type(err).__name__}: {err}",
                         user_error=isinstance(err, UserError))
        raise
    finally:
        tb.close()
        log.removeHandler(handler)
        handler.close()


class _Prefix(logging.Filter):
    """Prefix every line of a nested run with its name, so the parent's log tells stages apart."""

    def __init__(self, tag: str):
        super().__init__()
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_mtl_prefixed", False):
            record.msg = f"[{self.tag}] {record.msg}"
            record._mtl_prefixed = True
        return True


def _run_logger(run: RunDir) -> tuple[logging.Logger, logging.Handler]:
    """A logger writing to the nested run's log.txt and, through "mtl", to the parent's console and log."""
    log = logging.getLogger("mtl.nested." + run.exp_id.replace(".", "_").replace("/", "."))
    log.propagate = True
    log.setLevel(logging.INFO)
    if not any(isinstance(f, _Prefix) for f in log.filters):
        log.addFilter(_Prefix(run.exp_id))
    run.path.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    return log, handler
