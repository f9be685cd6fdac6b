"""What a running job is handed: its options, folder, device, logger, TensorBoard writer, checkpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from mtl.train.distributed import SINGLE, Dist
from mtl.util.checkpoint import CheckpointStore
from mtl.util.run_dir import RunDir
from mtl.util.signals import StopFlag
from mtl.util.tensorboard import MetricsWriter


@dataclass
class JobContext:
    """Everything a job needs from the runner; jobs never parse flags or touch sys.argv.

    Resume order (what a job restores, first match wins): (1) the run's own latest checkpoint
    (`checkpoints.load_latest()`), (2) an `init_from` run named in the options, (3) scratch.
    """

    opts: Any
    run: RunDir
    device: torch.device
    log: logging.Logger
    tb: MetricsWriter
    checkpoints: CheckpointStore
    stop: StopFlag
    resuming: bool
    dist: Dist = SINGLE  # data-parallel: this rank's place; only rank 0 writes (its checkpoints are saved)

    def checkpoint(self, state: dict[str, Any], step: int, metric: float | None = None) -> None:
        """Save `state` as step `step`, then stop the job if SIGINT / SIGTERM arrived."""
        if self.dist.is_main:
            self.checkpoints.save(state, step, metric)
        self.agree_on_stop()  # a signal on any rank stops every rank, after this one checkpoint
        self.stop.raise_if_requested()

    def agree_on_stop(self) -> bool:
        """Whether a stop was requested on any rank (then on every rank): one all-reduce per call."""
        signum = self.dist.any_(self.stop.signum or 0)
        if signum and not self.stop.requested:
            self.stop.signum = signum
        return self.stop.requested
