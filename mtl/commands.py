"""The commands of main.py that are not jobs: --list and --prepare."""

from __future__ import annotations

import sys
from pathlib import Path

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


def prepare_command(name: str, data_dir: str, skip_bad: bool, workers: int | None, domains: str | None = None) -> int:
    """Convert data_dir/<name>/ to HDF5 (generating the mini-decathlon first when asked for it): the
    comma list `domains`, or every domain whose annotations are present."""
    from mtl.data.prepare import REPORT_NAME, prepare_dataset

    folder = Path(data_dir) / name
    chosen = [d.strip() for d in domains.split(",") if d.strip()] if domains else None
    report = prepare_dataset(name, folder, skip_bad=skip_bad, workers=workers, domains=chosen)
    for domain in report.get("not_present", []):
        sys.stdout.write(f"  {domain:<16} skipped: its annotations are not in {folder / 'annotations'}\n")
    for domain, entry in report["domains"].items():
        sys.stdout.write(f"  {domain:<16} {entry.get('status', '')}\n")
    sys.stdout.write(f"prepared {name} in {folder} (report: {folder / REPORT_NAME}; "
                     f"{report['skipped_total']} image(s) skipped)\n")
    return 0
