"""The train job: single-task or partitioned multi-task ResNet-26 on (mini-)Visual Decathlon.

One task's batch per step, stepped by that task's own SGD optimizer over the shared and its own
weights (the original's default); rounds of `train_iters` steps, each followed by validation.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from mtl.data.domains import get_dataset
from mtl.data.loader import MultiDomainLoader
from mtl.jobs import register_job
from mtl.jobs.context import JobContext
from mtl.jobs.train_options import TrainOptions
from mtl.jobs.train_setup import build_train_model, dataset_folder, init_from_run
from mtl.models.resources import format_resources, task_resources
from mtl.train.loop import evaluate, train_step
from mtl.train.metrics import decathlon_score
from mtl.train.optim import lr_at, make_sgd, set_lr
from mtl.util.atomic import atomic_write_json
from mtl.util.faults import maybe_inject_fault
from mtl.util.rng import capture_rng_state, restore_rng_state

EMA_DECAY = 0.99  # running training accuracy per task, as in the original (feeds the curriculum)


@register_job("train", TrainOptions)
def run_train(ctx: JobContext) -> dict:
    """Train, validate every round, checkpoint; returns per-task accuracy, score and resources."""
    opts, log = ctx.opts, ctx.log
    spec = get_dataset(opts.dataset)
    tasks = opts.task_names()
    folder = dataset_folder(opts)
    model = build_train_model(opts, [spec.domain(t) for t in tasks]).to(ctx.device)
    resources = task_resources(model, opts.input_res)
    log.info("tasks: %s\n%s", ", ".join(tasks), format_resources(resources))
    optimizers = {t: make_sgd(model.parameters_for(t), opts.lr, opts.momentum, opts.weight_decay, True)
                  for t in tasks}
    loader = MultiDomainLoader(folder, tasks, batch_size=opts.batch_size, device=ctx.device, seed=opts.seed,
                               policy=opts.curriculum, train_on_valid=opts.train_on_valid,
                               input_res=opts.input_res, prefetch=opts.prefetch, in_memory=opts.in_memory)
    state = {"step": 0, "train_acc": {t: 0.0 for t in tasks}, "seen": {t: 0 for t in tasks}, "history": []}
    if (saved := ctx.checkpoints.load_latest()) is not None:
        _restore(saved[1], model, optimizers, loader, state)
        log.info("resumed from step %d", state["step"])
    elif opts.init_from:
        init_from_run(model, opts.init_from, ctx.run.exp_root, log)
    net = torch.compile(model) if opts.compile else model
    try:
        _train_rounds(ctx, net, model, optimizers, loader, state, folder, tasks)
    finally:
        loader.close()
    return _finish(ctx, net, folder, tasks, spec, resources, state)


def _train_rounds(ctx, net, model, optimizers, loader, state, folder, tasks) -> None:
    opts = ctx.opts
    total = opts.num_rounds * opts.train_iters
    window = {"start": time.perf_counter(), "images": 0}
    while state["step"] < total:
        task, images, labels = next(loader)
        if opts.channels_last and ctx.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        lr = lr_at(state["step"], opts.lr, opts.lr_drop_steps, opts.lr_drop_factor)
        set_lr(optimizers[task], lr)
        metrics = train_step(net, optimizers[task], task, images, labels, amp=opts.amp)
        state["step"] += 1
        window["images"] += len(labels)
        _update_train_accuracy(state, loader, task, metrics["accuracy"])
        maybe_inject_fault("train_step", state["step"])
        if state["step"] % opts.log_every == 0:
            _log_train(ctx, task, metrics, lr, state, window)
        if state["step"] % opts.train_iters == 0:
            _end_round(ctx, net, model, optimizers, loader, state, folder, tasks)
        elif state["step"] % opts.checkpoint_every == 0 or ctx.stop.requested:
            ctx.checkpoint(_snapshot(model, optimizers, loader, state), state["step"])


def _update_train_accuracy(state, loader, task, batch_acc) -> None:
    state["seen"][task] += 1
    ema = EMA_DECAY * state["train_acc"][task] + (1 - EMA_DECAY) * batch_acc
    state["train_acc"][task] = ema
    loader.update_task_accuracy(task, min(1.0, ema / (1 - EMA_DECAY ** state["seen"][task])))


def _log_train(ctx, task, metrics, lr, state, window) -> None:
    step = state["step"]
    ctx.tb.task_scalar(task, "train", "loss", metrics["loss"], step)
    ctx.tb.task_scalar(task, "train", "accuracy", metrics["accuracy"], step)
    ctx.tb.scalar("train/lr", lr, step)
    elapsed = time.perf_counter() - window["start"]
    if elapsed > 0:
        ctx.tb.scalar("train/images_per_s", window["images"] / elapsed, step)
    window.update(start=time.perf_counter(), images=0)


def _end_round(ctx, net, model, optimizers, loader, state, folder, tasks) -> None:
    opts = ctx.opts
    results = evaluate(net, folder, tasks, "val", device=ctx.device, input_res=opts.input_res,
                       batch_size=opts.eval_batch_size, max_images=opts.val_max_images, amp=opts.amp,
                       channels_last=opts.channels_last and ctx.device.type == "cuda")
    accuracy = {t: r["accuracy"] for t, r in results.items()}
    mean_acc = sum(accuracy.values()) / len(accuracy)
    for t, r in results.items():
        ctx.tb.task_scalar(t, "val", "accuracy", r["accuracy"], state["step"])
        ctx.tb.task_scalar(t, "val", "loss", r["loss"], state["step"])
    ctx.tb.scalar("val/score", mean_acc, state["step"])
    state["history"].append({"step": state["step"], "val_accuracy": accuracy})
    ctx.log.info("round %d/%d (step %d): val accuracy %s | mean %.4f", state["step"] // opts.train_iters,
                 opts.num_rounds, state["step"], " ".join(f"{t}={a:.3f}" for t, a in accuracy.items()), mean_acc)
    ctx.checkpoint(_snapshot(model, optimizers, loader, state), state["step"], metric=mean_acc)


def _snapshot(model, optimizers, loader, state) -> dict:
    return {"model": model.state_dict(), "optimizers": {t: o.state_dict() for t, o in optimizers.items()},
            "loader": loader.state_dict(), "train": dict(state), "rng": capture_rng_state()}


def _restore(saved, model, optimizers, loader, state) -> None:
    model.load_state_dict(saved["model"])
    for task, optimizer in optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][task])
    loader.load_state_dict(saved["loader"])
    state.update(saved["train"])
    restore_rng_state(saved["rng"])


def _finish(ctx, net, folder: Path, tasks, spec, resources, state) -> dict:
    opts = ctx.opts
    final = evaluate(net, folder, tasks, "val", device=ctx.device, input_res=opts.input_res,
                     batch_size=opts.eval_batch_size, amp=opts.amp, keep_predictions=True)
    atomic_write_json(ctx.run.path / "predictions.json",
                      {t: {"split": "val", "image_ids": r.pop("image_ids"), "predicted": r.pop("predicted")}
                       for t, r in final.items()})
    accuracy = {t: r["accuracy"] for t, r in final.items()}
    results = {
        "steps": state["step"], "tasks": tasks, "val_accuracy": accuracy,
        "mean_val_accuracy": sum(accuracy.values()) / len(accuracy),
        "decathlon_score": decathlon_score(accuracy, spec),
        "resources": {t: r.to_dict() for t, r in resources.items()},
        "history": state["history"],
    }
    if opts.write_submission:
        results["submission"] = str(_write_submission(ctx, net, folder, tasks))
    ctx.log.info("final val accuracy %s | decathlon-style score %.1f",
                 " ".join(f"{t}={a:.3f}" for t, a in accuracy.items()), results["decathlon_score"])
    return results


def _write_submission(ctx, net, folder: Path, tasks) -> Path:
    from mtl.data.submission import write_submission

    opts = ctx.opts
    test = evaluate(net, folder, tasks, "test", device=ctx.device, input_res=opts.input_res,
                    batch_size=opts.eval_batch_size, amp=opts.amp, keep_predictions=True)
    predictions = {t: (r["image_ids"], r["predicted"]) for t, r in test.items()}
    return write_submission(ctx.run.path / "submission.json", folder, predictions)
