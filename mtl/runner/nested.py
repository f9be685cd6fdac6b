"""Run a job as a nested run (exp/<parent>/<stage>) inside the current process, like main.py would.

Pipelines and objectives that train use it instead of subprocesses. A nested run has its own run
folder (config.json, status.json, log.txt, checkpoints/, events, results.json) and is:
- skipped when it is done with the same options (its results.json is returned);
- continued from its own checkpoints when it exists but is not done (killed, interrupted, failed),
  or when only resume-safe options changed (e.g. more rounds, a larger search budget);
- refused, with a clear error, when options that shape its results changed.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from mtl.config.options import build_options, option_fields
from mtl.errors import UserError
from mtl.jobs import get_job
from mtl.runner.execute import config_record, execute
from mtl.runner.stop import current_stop
from mtl.util.atomic import read_json
from mtl.util.run_dir import RunDir, resolve_run_path
from mtl.util.signals import StopFlag


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
        opts.check_inputs(exp_root)
        run.create()
    try:
        run.write_config(config_record(job, opts, note or "nested", None))
        log, handler = _run_logger(run)
        try:
            return execute(job, opts, run, resuming=resuming, log=log, stop=stop or current_stop())
        finally:
            log.removeHandler(handler)
            handler.close()
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
