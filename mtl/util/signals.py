"""Graceful stop on SIGINT / SIGTERM (Ctrl-C, cloud preemption): finish the step, checkpoint, exit."""

from __future__ import annotations

import os
import signal


class Interrupted(Exception):
    """Raised by a job after it checkpointed because a stop was requested."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopFlag:
    """Set by SIGINT / SIGTERM; jobs poll it between steps. A second SIGINT stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.listeners: list = []  # called with the signal number when one arrives (e.g. to pass it on)
        self._previous: dict[int, object] = {}

    def install(self) -> "StopFlag":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def raise_if_requested(self) -> None:
        """Raise Interrupted when a stop was requested (call right after checkpointing)."""
        if self.requested:
            raise Interrupted(self.signum)

    def _handle(self, signum, _frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        for listener in list(self.listeners):
            listener(signum)


class OrphanAwareStopFlag(StopFlag):
    """A stop flag for a worker process: also set (as SIGTERM) once the parent process is gone, so an
    orphaned worker checkpoints and stops instead of running on beside a restarted parent."""

    def __init__(self) -> None:
        super().__init__()
        self._parent = os.getppid()

    @property
    def requested(self) -> bool:
        if self.signum is None and os.getppid() != self._parent:
            self.signum = signal.SIGTERM
        return self.signum is not None
