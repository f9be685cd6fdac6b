"""Fault injection for crash and preemption tests.

``MTL_FAULT=<signal>@<point>=<n>`` makes the process send itself a real signal the n-th time it
passes the named point, e.g. ``MTL_FAULT=KILL@train_step=37`` (SIGKILL after step 37) or
``MTL_FAULT=TERM@train_step=20``. Under torchrun, ``MTL_FAULT_RANK=<r>`` limits it to rank r. Unset (the
normal case) it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def maybe_inject_fault(point: str, count: int) -> None:
    """Send the configured signal to this process when (point, count) matches MTL_FAULT."""
    spec = os.environ.get("MTL_FAULT")
    if not spec:
        return
    sig_name, _, target = spec.partition("@")
    target_point, _, target_count = target.partition("=")
    only = os.environ.get("MTL_FAULT_RANK")
    if only is not None and only != os.environ.get("RANK", "0"):
        return
    if target_point == point and int(target_count) == count:
        os.kill(os.getpid(), getattr(signal, "SIG" + sig_name.upper()))
