"""The train job: single-task, partitioned or graph-composed multi-task models on (mini-)Visual Decathlon.

By default (``--mtl_method naive``) one task's batch per step, stepped by that task's own SGD over
the shared and its own weights (the original's default); any other method takes one batch of every
task per step and one combined update (mtl/train/method_step.py). Rounds of `train_iters` steps,
each followed by validation.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from mtl.data.domains import get_dataset
from mtl.errors import UserError
from mtl.jobs import register_job
from mtl.jobs.backbone import NONE, load_backbone
from mtl.runner.context import JobContext
from mtl.jobs.train_options import TrainOptions
from mtl.jobs.train_setup import build_train_model, dataset_folder, init_from_run
from mtl.methods import build_method
from mtl.models.resnet import ResNet26
from mtl.models.resources import format_resources, task_resources
from mtl.train.distributed import check_same_state
from mtl.train.divergence import DivergenceGuard
from mtl.train.evaluate import evaluate
from mtl.train.method_step import make_steps
from mtl.train.metrics import decathlon_score
from mtl.train.optim import lr_at
from mtl.train.task_step import precision
from mtl.util.atomic import atomic_write_json
from mtl.util.faults import maybe_inject_fault
from mtl.util.memory import peak_memory, reset_peak
from mtl.util.rng import capture_rng_state, restore_rng_state

EMA_DECAY = 0.99  # running training accuracy per task, as in the original (feeds the curriculum)


@register_job("train", TrainOptions)
def run_train(ctx: JobContext) -> dict:
    """Train, validate every round, checkpoint; returns per-task accuracy, score and resources."""
    opts, log = ctx.opts, ctx.log
    spec = get_dataset(opts.dataset)
    tasks = opts.task_names()
    folder = ctx.dist.main_first(lambda: dataset_folder(opts))  # built once when missing
    model = build_train_model(opts, [spec.domain(t) for t in tasks]).to(ctx.device)
    if opts.sync_bn and ctx.dist.active:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    resources = task_resources(model, opts.input_res) if isinstance(model, ResNet26) else {}  # convs to count
    log.info("tasks: %s\n%s", ", ".join(tasks), format_resources(resources) if resources else
             f"graph model: {sum(p.numel() for p in model.parameters())} parameters")
    method = build_method(opts.mtl_method, len(tasks), opts.method_options).to(ctx.device)
    state = {"step": 0, "train_acc": {t: 0.0 for t in tasks}, "seen": {t: 0 for t in tasks}, "history": [],
             "train_seconds": 0.0, "train_cpu_seconds": 0.0, "timed_steps": 0}
    net = torch.compile(model) if opts.compile else model
    steps = make_steps(opts, model, net, method, tasks, folder, ctx.device, ctx.dist)
    log.info("%s", steps.describe())
    if (saved := ctx.checkpoints.load_latest()) is not None:
        _restore_checked(ctx, saved, model, steps, method, state)
        log.info("resumed from step %d", state["step"])
    else:
        if opts.backbone not in ("", NONE):
            load_backbone(model, opts.backbone, ctx.run.exp_root, log)
        if opts.init_from:
            init_from_run(model, opts.init_from, ctx.run.exp_root, log)
    _same_start(ctx, model, state["step"])
    reset_peak(ctx.device)
    try:
        _train_rounds(ctx, model, steps, method, state, folder, tasks)
    finally:
        steps.loader.close()
    state["memory"] = peak_memory(ctx.device)
    return _finish(ctx, steps.eval_net, folder, tasks, spec, resources, state)


def _train_rounds(ctx, model, steps, method, state, folder, tasks) -> None:
    opts = ctx.opts
    total = opts.num_rounds * opts.train_iters
    window = {"start": time.perf_counter(), "images": 0}
    guard = DivergenceGuard(opts.divergence_patience)
    while state["step"] < total:
        lr = lr_at(state["step"], opts.lr, opts.lr_drop_steps, opts.lr_drop_factor)
        started, cpu_started = time.perf_counter(), time.process_time()
        metrics, info = steps.step(lr)
        state["train_seconds"] += time.perf_counter() - started
        state["train_cpu_seconds"] += time.process_time() - cpu_started  # robust on a shared machine
        state["timed_steps"] += 1
        state["step"] += 1
        if not guard.record(all(v["finite"] for v in metrics.values()), state["step"], _blamed(metrics), lr):
            ctx.log.warning("step %d skipped: non-finite loss or gradient (%s)", state["step"], ", ".join(
                f"{t} loss {v['loss']:.4g}" for t, v in metrics.items()))
        for task, values in metrics.items():
            window["images"] += values["images"]
            if values["finite"]:
                _update_train_accuracy(state, steps.loader, task, values["accuracy"])
        if info is not None and state["step"] == 1:
            ctx.log.info("step 1: gradient source %s, heads %s, task weights %s", info.source, info.heads,
                         " ".join(f"{t}={w:.3g}" for t, w in zip(tasks, info.weights)))
        if opts.check_ranks:
            check_same_state(ctx.dist, "method state", method.state_dict(), state["step"])
            check_same_state(ctx.dist, "model", model.state_dict(), state["step"])
        maybe_inject_fault("train_step", state["step"])
        if state["step"] % opts.log_every == 0:
            _log_train(ctx, metrics, info, tasks, lr, state, window)
        if state["step"] % opts.train_iters == 0:
            steps.end_round()
            _end_round(ctx, model, steps, method, state, folder, tasks, info, save=not guard.in_a_row)
        elif (state["step"] % opts.checkpoint_every == 0 and not guard.in_a_row) or ctx.agree_on_stop():
            # No checkpoint inside a run of skipped steps: the last good one stays the latest.
            ctx.checkpoint(_snapshot(model, steps, method, state), state["step"])


def _blamed(metrics: dict) -> list[str]:
    """The tasks whose loss was not finite (all of them when only the gradient was)."""
    return [t for t, v in metrics.items() if not math.isfinite(v["loss"])] or list(metrics)


def _update_train_accuracy(state, loader, task, batch_acc) -> None:
    state["seen"][task] += 1
    ema = EMA_DECAY * state["train_acc"][task] + (1 - EMA_DECAY) * batch_acc
    state["train_acc"][task] = ema
    loader.update_task_accuracy(task, min(1.0, ema / (1 - EMA_DECAY ** state["seen"][task])))


def _log_train(ctx, metrics, info, tasks, lr, state, window) -> None:
    step = state["step"]
    for task, values in metrics.items():
        ctx.tb.task_scalar(task, "train", "loss", values["loss"], step)
        ctx.tb.task_scalar(task, "train", "accuracy", values["accuracy"], step)
    if info is not None:  # method/weight/<task> and the method's diagnostics
        for tag, value in info.as_log(tasks, prefix="method/").items():
            ctx.tb.scalar(tag, value, step)
    ctx.tb.scalar("train/lr", lr, step)
    elapsed = time.perf_counter() - window["start"]
    if elapsed > 0:
        ctx.tb.scalar("train/images_per_s", window["images"] / elapsed, step)
    window.update(start=time.perf_counter(), images=0)


def _same_start(ctx, model, step: int) -> None:
    """Data-parallel: every rank resumed the same checkpoint, and starts from rank 0's weights."""
    if not ctx.dist.active:
        return
    steps = ctx.dist.gather(step)
    if len(set(steps)) != 1:
        raise RuntimeError(f"ranks resumed different checkpoints (steps {steps}); is {ctx.checkpoints.folder} "
                           "on a file system every rank sees?")
    ctx.dist.broadcast_(list(model.state_dict().values()))


def _end_round(ctx, model, steps, method, state, folder, tasks, info, save: bool = True) -> None:
    opts = ctx.opts
    if not ctx.dist.is_main:  # rank 0 validates (same weights and statistics everywhere) and saves
        if save or ctx.agree_on_stop():
            ctx.checkpoint({}, state["step"])
        return
    results = evaluate(steps.eval_net, folder, tasks, "val", device=ctx.device, input_res=opts.input_res,
                       batch_size=opts.eval_batch_size, max_images=opts.val_max_images, amp=steps.amp,
                       channels_last=opts.channels_last and ctx.device.type == "cuda")
    accuracy = {t: r["accuracy"] for t, r in results.items()}
    mean_acc = sum(accuracy.values()) / len(accuracy)
    for t, r in results.items():
        ctx.tb.task_scalar(t, "val", "accuracy", r["accuracy"], state["step"])
        ctx.tb.task_scalar(t, "val", "loss", r["loss"], state["step"])
    ctx.tb.scalar("val/score", mean_acc, state["step"])
    state["history"].append({"step": state["step"], "val_accuracy": accuracy})
    weights = f" | method weights {' '.join(f'{t}={w:.3g}' for t, w in zip(tasks, info.weights))}" if info else ""
    ctx.log.info("round %d/%d (step %d): val accuracy %s | mean %.4f%s", state["step"] // opts.train_iters,
                 opts.num_rounds, state["step"], " ".join(f"{t}={a:.3f}" for t, a in accuracy.items()), mean_acc,
                 weights)
    if save or ctx.agree_on_stop():
        ctx.checkpoint(_snapshot(model, steps, method, state), state["step"], metric=mean_acc)


def _snapshot(model, steps, method, state) -> dict:
    snapshot = {"model": model.state_dict(), "optimizers": {k: o.state_dict() for k, o in steps.optimizers.items()},
                "loader": steps.loader.state_dict(), "method": method.state_dict(), "train": dict(state),
                "rng": capture_rng_state()}
    if steps.scaler is not None:  # fp16: the loss scale and its growth tracker
        snapshot["scaler"] = steps.scaler.state_dict()
    return snapshot


def _restore_checked(ctx, saved, model, steps, method, state) -> None:
    """_restore, with a model that does not fit its checkpoint reported as the user error it is."""
    try:
        _restore(saved[1], model, steps, method, state)
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[:2]
        raise UserError(f"the checkpoint of step {saved[0]} in {ctx.checkpoints.folder} does not fit the model "
                        f"built from {ctx.run.config_path} ({' '.join(first)[:300]}...). Was config.json edited? "
                        "Restore the options the run was started with, or start a new run.") from None


def _restore(saved, model, steps, method, state) -> None:
    model.load_state_dict(saved["model"])
    for key, optimizer in steps.optimizers.items():
        optimizer.load_state_dict(saved["optimizers"][key])
    steps.after_restore()
    steps.loader.load_state_dict(saved["loader"])
    if steps.scaler is not None:
        steps.scaler.load_state_dict(saved["scaler"])
    if "method" in saved:  # checkpoints from before the methods were wired hold none (naive)
        method.load_state_dict(saved["method"])
    state.update(saved["train"])
    restore_rng_state(saved["rng"])


def _finish(ctx, net, folder: Path, tasks, spec, resources, state) -> dict:
    opts = ctx.opts
    if not ctx.dist.is_main:
        return {}
    final = evaluate(net, folder, tasks, "val", device=ctx.device, input_res=opts.input_res,
                     batch_size=opts.eval_batch_size, amp=precision(opts, ctx.device), keep_predictions=True)
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
        "method": {"name": opts.mtl_method, "options": dict(opts.method_options), "grad_source": opts.grad_source},
        "images_per_step": opts.batch_size * (1 if opts.mtl_method == "naive" else len(tasks)),
        "perf": {"seconds_per_step": state["train_seconds"] / max(state["timed_steps"], 1),
                 "cpu_seconds_per_step": state.get("train_cpu_seconds", 0.0) / max(state["timed_steps"], 1),
                 **state.pop("memory")},
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
                    batch_size=opts.eval_batch_size, amp=precision(opts, ctx.device), keep_predictions=True)
    predictions = {t: (r["image_ids"], r["predicted"]) for t, r in test.items()}
    return write_submission(ctx.run.path / "submission.json", folder, predictions)
