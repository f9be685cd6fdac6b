"""The run folder exp/<id>/: config.json, status.json, results.json, log.txt, events, checkpoints/."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

from mtl.errors import UserError
from mtl.util.atomic import atomic_write_json, read_json
from mtl.util.run_lock import LOCK_NAME, RunLock, is_locked

_log = logging.getLogger("mtl")
_NAME_MAX = 255  # bytes of one path component on Linux / macOS file systems
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.=+-]+(/[A-Za-z0-9_.=+-]+)*$")


def resolve_run_path(exp_root: str | Path, exp_id: str) -> Path:
    """exp_root/exp_id, refusing ids that are empty, absolute or escape exp_root."""
    if not exp_id or not _ID_PATTERN.match(exp_id) or any(p in (".", "..") for p in exp_id.split("/")):
        raise UserError(
            f"-e {exp_id!r} is not a valid run name. Use letters, digits and . _ - = +, with '/' to nest "
            "runs (e.g. sweep/t3); '..' and absolute paths are refused."
        )
    too_long = [p for p in exp_id.split("/") if len(p.encode()) > _NAME_MAX]
    if too_long:
        raise UserError(f"-e: the name part {too_long[0][:40]!r}... is {len(too_long[0].encode())} characters; a "
                        f"folder name may have at most {_NAME_MAX}. Use a shorter name (or nest: a/b/c).")
    root = Path(exp_root).resolve()
    if root.exists() and not root.is_dir():
        raise UserError(f"--exp_root {exp_root} is a file, not a folder; point it at a folder (default: exp).")
    path = (root / exp_id).resolve()
    if root not in path.parents:
        raise UserError(f"-e {exp_id!r} points outside the experiment root {root}.")
    return path


class RunDir:
    """One run's folder and the small JSON files in it."""

    def __init__(self, path: str | Path, exp_id: str):
        self.path = Path(path)
        self.exp_id = exp_id
        self._lock = RunLock(self.path, exp_id)

    config_path = property(lambda self: self.path / "config.json")
    status_path = property(lambda self: self.path / "status.json")
    results_path = property(lambda self: self.path / "results.json")
    log_path = property(lambda self: self.path / "log.txt")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")

    @property
    def exp_root(self) -> Path:
        """The experiment root this run lives under (exp/ for exp/sweep/t3)."""
        return self.path.parents[len(self.exp_id.split("/")) - 1]

    def exists(self) -> bool:
        return self.config_path.exists()

    def create(self, overwrite: bool = False) -> None:
        """Make a fresh folder and lock it; an existing run is moved aside with `overwrite`, else refused.

        A run that failed with a user error before its first checkpoint holds nothing worth keeping: it is
        started afresh (its folder emptied) and the message says so. A live run is never moved.
        """
        if self._has_content():
            if self.failed_before_start():
                self._restart_failed()
            elif not overwrite:
                raise UserError(
                    f"run {self.exp_id!r} already exists at {self.path}. Resume it with --continue, "
                    "pick another -e name, or pass --overwrite to move the old folder aside (nothing is deleted)."
                )
            else:
                old = RunLock(self.path, self.exp_id).acquire()  # refuses while its process lives
                try:
                    self.path.rename(self._aside_path())
                finally:
                    old.release()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock()
        except OSError as err:
            raise UserError(f"cannot create the run folder {self.path}: {err.strerror or err}. Pick an experiment "
                            "root you can write to (--exp_root DIR) with free space.") from None

    def lock(self) -> None:
        """Hold the folder's lock until `unlock` (UserError naming the holder when another process has it)."""
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    def failed_before_start(self) -> bool:
        """Failed with a user error (bad data, device, partition file) before writing any checkpoint."""
        status = self.read_status()
        return (status.get("state") == "failed" and bool(status.get("user_error"))
                and all(_written_at_start(p) for p in self.path.iterdir()))

    def _restart_failed(self) -> None:
        lock = RunLock(self.path, self.exp_id).acquire()
        try:
            error = self.read_status().get("error", "")
            for entry in self.path.iterdir():
                if entry.name != LOCK_NAME:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        finally:
            lock.release()
        _log.warning("run %s had failed before its first checkpoint (%s); starting it again", self.exp_id,
                     error or "user error")

    def _has_content(self) -> bool:
        return self.path.is_dir() and any(p.name != LOCK_NAME for p in self.path.iterdir())

    def _aside_path(self) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        candidate = self.path.with_name(f"{self.path.name}.old-{stamp}")
        n = 1
        while candidate.exists():
            candidate = self.path.with_name(f"{self.path.name}.old-{stamp}-{n}")
            n += 1
        return candidate

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        """config.json, checked to be a run's config; UserError naming the file otherwise."""
        try:
            config = read_json(self.config_path)
        except (OSError, ValueError) as err:
            raise UserError(f"{self.config_path} cannot be read ({err}); restore it (it records the run's options) "
                            "or start a new run with --config.") from None
        if not isinstance(config, dict) or not isinstance(config.get("job"), str) \
                or not isinstance(config.get("options"), dict):
            raise UserError(f"{self.config_path} is not a run config (it needs a 'job' name and an 'options' "
                            "mapping); restore it or start a new run with --config.")
        return config

    def write_status(self, state: str, **extra: Any) -> None:
        """state is one of running / done / failed / interrupted."""
        status = {"state": state, "updated": _now(), "pid": os.getpid(), "host": socket.gethostname(), **extra}
        atomic_write_json(self.status_path, status)

    def read_status(self) -> dict[str, Any]:
        try:
            return read_json(self.status_path)
        except (OSError, ValueError):
            return {"state": "unknown"}

    def write_results(self, results: dict[str, Any]) -> None:
        atomic_write_json(self.results_path, results)


def list_runs(exp_root: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(run id, status) of every run folder (one holding config.json) under exp_root, sorted.

    Runs moved aside by --overwrite (`RUN.old-<time>`) are listed too. A run whose status says
    "running" but whose lock no process holds (killed) is shown as "stopped (no process)".
    """
    root = Path(exp_root)
    if not root.is_dir():
        return []
    runs = []
    for config in sorted(root.rglob("config.json")):
        folder = config.parent
        run = RunDir(folder, str(folder.relative_to(root)))
        status = run.read_status()
        if status.get("state") == "running" and not is_locked(folder):
            status = {**status, "state": "stopped (no process)"}
        runs.append((run.exp_id, status))
    return runs


def _written_at_start(path: Path) -> bool:
    """Files any run writes before its first step: nothing of the job's own state (checkpoints, results)."""
    if path.name == "checkpoints":
        return not any(path.glob("ckpt-*.pt"))
    return path.name in ("config.json", "status.json", "log.txt", LOCK_NAME) or path.name.startswith("events.out")


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")
