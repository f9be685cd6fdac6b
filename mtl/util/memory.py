"""Peak memory of a stretch of work: CUDA allocator peak, or the process's resident-set high-water mark.

``reset_peak(device)`` starts a measurement; ``peak_memory(device)`` returns what the stretch used.
CUDA: ``torch.cuda.max_memory_allocated`` (tensors only). CPU (Linux): the resident-set high-water
mark ``VmHWM``, reset through ``/proc/self/clear_refs``, minus the resident size at the reset, i.e.
what the stretch added on top of what the process already held (model, data in RAM, libraries).
Elsewhere: the process's lifetime peak RSS (``ru_maxrss``), which includes everything.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_baseline: dict[str, int] = {}


def reset_peak(device: torch.device) -> None:
    """Start measuring the peak from now on."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        _baseline["rss"] = _status_kib("VmRSS") * 1024
    except (OSError, ValueError):
        _baseline.pop("rss", None)


def peak_memory(device: torch.device) -> dict[str, float | str]:
    """{"peak_memory_mb": float, "memory": what was measured} since `reset_peak(device)`."""
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "memory": "cuda max_memory_allocated"}
    if "rss" in _baseline:
        try:
            peak = _status_kib("VmHWM") * 1024 - _baseline["rss"]
            return {"peak_memory_mb": peak / 2**20, "memory": "peak RSS above the RSS at the start of training",
                    "process_peak_memory_mb": _status_kib("VmHWM") / 1024}
        except (OSError, ValueError):
            pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20,
            "memory": "process lifetime peak RSS"}


def _status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{key} not in {_STATUS}")
    return int(match.group(1))
