"""The commands of main.py that are not jobs: --list (--prepare: mtl/data/prepare.py `prepare_command`)."""

from __future__ import annotations

import sys

from mtl.config.loader import describe_configs
from mtl.util.run_dir import list_runs


def list_command(exp_root: str, out=None) -> int:
    """Print the configs and the runs under exp_root with their status."""
    out = out or sys.stdout
    out.write("configs:\n")
    for name, job, description in describe_configs():
        out.write(f"  {name:<28} {job:<9} {description}\n")
    runs = list_runs(exp_root)
    out.write(f"\nruns under {exp_root}/:" + ("" if runs else " none") + "\n")
    for exp_id, status in runs:
        error = f"  ({status['error']})" if status.get("error") else ""
        out.write(f"  {exp_id:<40} {status.get('state', 'unknown'):<12} {status.get('updated', '')}{error}\n")
    return 0
