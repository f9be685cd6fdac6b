"""Console + log.txt logging (the same lines in both) and tqdm progress bars."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
_FORMAT = "%(asctime)s %(levelname).1s %(message)s"
_DATE = "%H:%M:%S"


def setup_logging(log_file: str | Path | None = None, quiet: bool = False) -> logging.Logger:
    """The "mtl" logger writing to stderr and, when given, appending to `log_file`.

    Calling it again replaces the handlers (one run per process at a time).
    """
    logger = logging.getLogger("mtl")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter(_FORMAT, _DATE)
    if not quiet:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(formatter)
        logger.addHandler(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", initial: int = 0) -> Iterable[T]:
    """A tqdm bar with ETA on a terminal; silent when stderr is not a terminal (CI, log files)."""
    return tqdm(iterable, total=total, desc=desc, initial=initial, disable=None, leave=False,
                dynamic_ncols=True)
