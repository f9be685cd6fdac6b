"""Training: loops, optimizers and schedules, evaluation and metrics, multi-task method glue."""
