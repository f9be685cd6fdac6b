"""Checks of what a run needs from the machine (data, named files), made before its run folder exists.

Each raises UserError saying what to do; the job itself repeats nothing of this (it reads what is
checked here and reports what can only fail later, e.g. a corrupt image).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from mtl.errors import UserError


def check_data(dataset: str, data_dir: str, tasks: Sequence[str]) -> None:
    """data_dir must be a folder; the decathlon must be prepared for `tasks`; the mini-decathlon is
    either prepared or buildable (its folder writable)."""
    from mtl.data.store import domain_file_path, is_complete

    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"--data_dir {data_dir} is a file; it must be the folder holding {dataset}/ "
                        f"(default: data).")
    folder = root / dataset
    missing = [t for t in tasks if not is_complete(domain_file_path(folder, t))]
    if not missing:
        return
    if dataset != "mini_decathlon":
        raise UserError(f"the prepared {dataset} data is missing for {', '.join(missing)} in {folder}. Put the "
                        f"devkit there (see setup_cloud.sh) and run: python main.py --prepare {dataset} "
                        f"--data_dir {data_dir}")
    existing = next((p for p in (folder, root, *root.resolve().parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK):
        raise UserError(f"the mini-decathlon is not prepared in {folder} and {existing} is not writable, so it "
                        f"cannot be built there; pick a writable --data_dir, or run python main.py --prepare "
                        "mini_decathlon --data_dir DIR where you can write.")
