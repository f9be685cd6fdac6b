"""TensorBoard scalars through torch.utils.tensorboard, with the documented tag names.

Tags (see README, "TensorBoard tags"):
    <task>/<split>/<metric>   per task, split in {train, val}, metric in {loss, accuracy, ...}
    <group>/<metric>          run-wide values, e.g. train/lr, train/images_per_s, val/score
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class MetricsWriter:
    """Thin wrapper over SummaryWriter that creates the event file only when first used."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        self.log_dir = Path(log_dir)
        self.purge_step = purge_step
        self._writer: SummaryWriter | None = None

    def _get(self) -> SummaryWriter:
        if self._writer is None:
            # purge_step hides events a killed run wrote after its last checkpoint.
            self._writer = SummaryWriter(str(self.log_dir), purge_step=self.purge_step)
        return self._writer

    def task_scalar(self, task: str, split: str, metric: str, value: float, step: int) -> None:
        """Write `<task>/<split>/<metric>`."""
        self._get().add_scalar(f"{task}/{split}/{metric}", float(value), step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Write a run-wide scalar such as `train/lr`."""
        self._get().add_scalar(tag, float(value), step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
