"""The distill job: score one partition with the distillation proxy (reference/original-system.md §3.8).

    python main.py -e distillation_test --config exp.dist --partition P.json
    python main.py -e distillation_test --continue          # after a crash or preemption

Teachers' features are computed once, the partitioned student trains on them (checkpointed every
`checkpoint_every` steps; a resumed run ends exactly where an uninterrupted one does), then the
teachers' heads score it. results.json: score, per-task scores and accuracies, losses, resources.
"""

from __future__ import annotations

import time

from mtl.data.domains import task_families
from mtl.distill.objective import ProxyObjective
from mtl.distill.proxy import ProxyTrainer, build_student
from mtl.jobs import register_job
from mtl.runner.context import JobContext
from mtl.jobs.distill_options import DistillOptions
from mtl.meta.partition import load_partition, resolve_partition, save_partition, to_json_dict
from mtl.train.divergence import Diverged
from mtl.train.optim import lr_at
from mtl.util.faults import maybe_inject_fault


@register_job("distill", DistillOptions)
def run_distill(ctx: JobContext) -> dict:
    """Build the teachers' feature cache, train the student (resumable), score it."""
    opts, log = ctx.opts, ctx.log
    tasks = opts.task_names()
    objective = ProxyObjective.from_options(opts, ctx.run.exp_root)
    partition = _partition(ctx, tasks)
    start = time.perf_counter()
    cache, init = objective.load(ctx.device)
    log.info("teachers: %s | cache %.1f MB on %s (%s) in %.1f s", ", ".join(
        f"{t}={cache.teacher_accuracy[t]:.3f}" for t in tasks), cache.nbytes() / 2**20, cache.device,
        "features" if cache.cached else "images only", time.perf_counter() - start)
    student = build_student(cache, [partition], [opts.seed], init=init, stack=opts.stack,
                            layers=opts.partition_layers)
    trainer = ProxyTrainer(cache, student, objective.schedule, opts.amp)
    if (saved := ctx.checkpoints.load_latest()) is not None:
        trainer.load_state_dict(saved[1])
        log.info("resumed from step %d", trainer.step)
    start = time.perf_counter()
    trainer.train(on_step=lambda tr: _after_step(ctx, tr))
    train_seconds = time.perf_counter() - start
    _check_finite(opts, trainer, trainer.step)
    result = trainer.score()[0]
    ctx.checkpoint(trainer.state_dict(), trainer.step, metric=result["score"])
    log.info("proxy score %.4f | %s", result["score"],
             " ".join(f"{t}={a:.3f}" for t, a in result["accuracy"].items()))
    ctx.tb.scalar("val/score", result["score"], trainer.step)
    return {**result, "tasks": tasks, "partition": to_json_dict(partition), "train_seconds": train_seconds,
            "cache_mb": cache.nbytes() / 2**20}


def _partition(ctx: JobContext, tasks: list[str]):
    """The run's partition: saved in the run folder on the first start and reread on --continue."""
    opts, path = ctx.opts, ctx.run.path / "partition.json"
    if ctx.resuming and path.exists():
        return load_partition(path, tasks)
    partition = resolve_partition(opts.partition, tasks, seed=opts.partition_seed,
                                  families=task_families(opts.dataset, tasks))
    save_partition(partition, path)
    return partition


def _after_step(ctx: JobContext, trainer: ProxyTrainer) -> None:
    opts, step = ctx.opts, trainer.step
    maybe_inject_fault("distill_step", step)  # crash tests: MTL_FAULT=KILL@distill_step=N
    saving = (step % opts.checkpoint_every == 0 or ctx.stop.requested) and step < opts.steps
    if step % opts.log_every == 0 or step == opts.steps or saving:
        _check_finite(opts, trainer, step)  # before a checkpoint: the last one saved stays a good one
    if step % opts.log_every == 0 or step == opts.steps:
        for task, loss in trainer.losses()[0].items():
            ctx.tb.task_scalar(task, "train", "distill_loss", loss, step)
        ctx.tb.scalar("train/lr", lr_at(step - 1, opts.lr, opts.lr_drop_steps, opts.lr_drop_factor), step)
    if step % (opts.log_every * 10) == 0:
        ctx.log.info("step %d/%d: distillation loss %s", step, opts.steps,
                     " ".join(f"{t}={v:.4f}" for t, v in trainer.losses()[0].items()))
    if saving:
        ctx.checkpoint(trainer.state_dict(), step)


def _check_finite(opts, trainer: ProxyTrainer, step: int) -> None:
    """Diverged once a distillation loss was not finite (read where the job syncs anyway)."""
    bad = int(trainer.nonfinite)
    if bad:
        lr = lr_at(step - 1, opts.lr, opts.lr_drop_steps, opts.lr_drop_factor)
        raise Diverged(f"distillation diverged: {bad} step(s) up to step {step} had a non-finite loss. The likely "
                       f"cause is the learning rate (--lr {lr:g} at this step): continue from the last "
                       "checkpoint with a smaller one (--continue --lr ...).")
