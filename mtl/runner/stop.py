"""Which stop flag (SIGINT / SIGTERM) the job running in this process polls, for the nested runs it starts."""

from __future__ import annotations

import contextlib
from typing import Iterator

from mtl.util.signals import StopFlag

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
