"""One process per run folder: an OS lock on <run>/.lock, held for the life of the job.

A POSIX record lock (``fcntl.lockf``): the kernel drops it when the holder dies, however it dies
(SIGKILL included), so a stale lock is simply taken over; forked children (data-loader workers) do
not inherit it, so a killed run is not kept locked by its orphans. Record locks do not exclude
the holding process itself, so this process's held locks are also kept in a set.
The lock file holds the holder's pid, host and start time, which a refused process quotes.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from mtl.errors import UserError

LOCK_NAME = ".lock"
_held: set[str] = set()  # lock files held by this process (record locks never conflict within one)


class RunLock:
    """The lock of one run folder; `acquire` raises UserError naming the live holder."""

    def __init__(self, folder: str | Path, exp_id: str):
        self.path = Path(folder) / LOCK_NAME
        self.exp_id = exp_id
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Take the lock (the folder must exist); UserError when another process holds it."""
        if self.held:
            return self
        key = os.path.realpath(self.path)
        if key in _held:
            raise UserError(f"run {self.exp_id!r} is already running in this process (pid {os.getpid()}); "
                            "a run folder is used by one job at a time.")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise UserError(f"run {self.exp_id!r} is in use by {holder} (lock {self.path}). Wait for it to "
                                "finish or stop it (Ctrl-C / kill PID) first; one process per run folder.") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_me()) + "\n").encode(), 0)
        self._fd = fd
        _held.add(key)
        return self

    def release(self) -> None:
        """Let go of the lock (the file stays: unlinking it would let two processes lock two inodes)."""
        if self._fd is None:
            return
        _held.discard(os.path.realpath(self.path))
        os.close(self._fd)  # closing drops the record lock
        self._fd = None


def is_locked(folder: str | Path) -> bool:
    """Whether a live process other than this one holds the run folder's lock (for --list)."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return False
    if os.path.realpath(path) in _held:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        # F_GETLK-style probe without taking the lock: a shared lock test on a read-only descriptor.
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # drops the probe's shared lock at once
    return False


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": dt.datetime.now().isoformat(timespec="seconds")}


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
