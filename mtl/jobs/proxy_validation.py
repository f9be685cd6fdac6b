"""The proxy_validation job: does the distillation proxy rank partitions as full training does?

    python main.py -e proxy_check --config exp.mini_distillation_sampling      # mini-decathlon, CPU
    python main.py -e proxy_check --continue                                    # finished parts are kept

Samples partitions (plus presets), scores each with the proxy at the default budget and at cheaper
ones (one population run per budget), trains each with the full multi-task schedule (nested train runs
under exp/<id>/full/, started in this process), then reports Spearman and Kendall rank correlations
with bootstrap CIs (report.md, scatter.png). proxy_validation.json holds the raw numbers, from which
`mtl.distill.validation.summarize` recomputes the summary. Teachers are trained here (nested runs
exp/<id>/teachers/<task>) unless --teachers names them.
"""

from __future__ import annotations

import time

import numpy as np

from mtl.data.domains import get_dataset, task_families
from mtl.distill.objective import ProxyObjective
from mtl.distill.validation import plot_scatter, render_report, summarize
from mtl.jobs import register_job
from mtl.runner.context import JobContext
from mtl.runner.child_options import child_options
from mtl.runner.nested import run_nested
from mtl.jobs.proxy_validation_options import ProxyValidationOptions
from mtl.meta.partition import (Partition, equal_size_of, equal_size_presets, preset, rescoring_params,
                                save_partition)
from mtl.meta.space import PartitionBlock
from mtl.util.atomic import atomic_write_json

RAW_FILE = "proxy_validation.json"


@register_job("proxy_validation", ProxyValidationOptions)
def run_proxy_validation(ctx: JobContext) -> dict:
    """Teachers -> partitions -> proxy scores per budget -> full trainings -> correlations and report."""
    opts, log = ctx.opts, ctx.log
    tasks = opts.task_names()
    saved = ctx.checkpoints.load_latest()
    state = saved[1] if saved else {"proxy": {}, "full": {}, "budgets": {}}
    teachers = _teachers(ctx, tasks)
    candidates = sample_candidates(opts, tasks)
    (ctx.run.path / "partitions").mkdir(exist_ok=True)
    for c in candidates:
        save_partition(c["partition"], ctx.run.path / "partitions" / f"{c['id']}.json")
    for name, overrides in budgets(opts).items():
        if name not in state["proxy"]:
            _proxy_scores(ctx, name, overrides, teachers, candidates, state)
    for c in candidates:
        for seed in opts.full_seeds:
            key = f"{c['id']}_s{seed}"
            if key not in state["full"]:
                state["full"][key] = _full_training(ctx, tasks, c, seed)
                ctx.checkpoint(state, len(state["proxy"]) + len(state["full"]))
    raw = raw_data(opts, tasks, candidates, state)
    atomic_write_json(ctx.run.path / RAW_FILE, raw)
    summary = summarize(raw)
    (ctx.run.path / "report.md").write_text(render_report(raw, summary))
    plot_scatter(raw, summary, ctx.run.path / "scatter.png")
    for name, entry in summary["budgets"].items():
        log.info("%s: Spearman %s, Kendall %s (n=%d)", name, entry["spearman"], entry["kendall"], summary["n"])
    return {**summary, "raw": RAW_FILE, "report": "report.md", "plot": "scatter.png"}


def budgets(opts: ProxyValidationOptions) -> dict[str, dict]:
    """"default" (the job's distill options) and the cheaper budgets, as ProxyObjective overrides."""
    out = {"default": {}}
    for name, budget in opts.budgets.items():
        budget = dict(budget)
        if "steps" in budget and "lr_drop_steps" not in budget:
            budget["lr_drop_steps"] = [round(budget["steps"] * 2 / 3)]  # the original's 2000 of 3000
        out[name] = budget
    return out


def sample_candidates(opts: ProxyValidationOptions, tasks: list[str]) -> list[dict]:
    """Presets, then `num_partitions` seeded draws, each around its own mean channel fraction (spread), or
    the equal_size sample."""
    if opts.sample == "equal_size":
        return equal_size_candidates(opts, tasks)
    out = [{"id": name, "preset": name, "partition": _tied(preset(name, len(tasks), seed=opts.partition_seed), tasks)}
           for name in opts.presets]
    rng = np.random.default_rng([opts.seed, 61])
    for i in range(opts.num_partitions):
        amt = float(rng.uniform(*opts.restrict_range))
        block = PartitionBlock(tuple(tasks), restrict_amt=amt)
        raw = np.asarray(block.to_value(block.sample(rng)))
        partition = Partition(raw, tasks=list(tasks), seed=opts.partition_seed, info={"restrict_amt": amt})
        out.append({"id": f"p{i:03d}", "preset": None, "partition": partition})
    return out


def equal_size_candidates(opts: ProxyValidationOptions, tasks: list[str]) -> list[dict]:
    """Partitions in which every task uses the same fraction f of the channels: the presets of that size
    (the families oracle when f = 1/K, its shape on groups that cross the families and the `family_mix`
    partitions between the two, share_fixed: share_fixed_0, i.e. independent, when f = 1/N), then `num_partitions`
    seeded draws of the pairwise sharing alone (forward overlaps uniform in their feasible interval,
    backward = forward)."""
    n, families = len(tasks), task_families(opts.dataset, tasks)
    f = equal_size_of(opts.equal_size_fraction, families)
    presets = equal_size_presets(families, f, opts.family_mix, opts.partition_seed)
    out = [{"id": name, "preset": name, "partition": _tied(p, tasks)} for name, p in presets.items()]
    rng = np.random.default_rng([opts.seed, 67])
    for i in range(opts.num_partitions):
        raw = np.ones((2, n, n))
        raw[0] = rng.uniform(0.0, 1.0, size=(n, n))
        raw[0][np.diag_indices(n)] = f
        out.append({"id": f"e{i:03d}", "preset": None,
                    "partition": Partition(raw, tasks=list(tasks), seed=opts.partition_seed, info={"fraction": f})})
    return out


def _tied(partition: Partition, tasks: list[str]) -> Partition:
    partition.tasks = list(tasks)
    return partition


def _teachers(ctx: JobContext, tasks: list[str]) -> str | list[str]:
    """--teachers, or one single-task run per task trained (or found finished) under exp/<id>/teachers/."""
    opts = ctx.opts
    if opts.teachers:
        return opts.teachers
    ids = []
    for task in tasks:
        values = {"task_choice": task, "model": "resnet26", **opts.teacher_options}
        run_nested("train", _train_options(opts, opts.teacher_config, values), ctx.run.exp_root,
                   f"{ctx.run.exp_id}/teachers/{task}", stop=ctx.stop, note=f"teacher of {ctx.run.exp_id}")
        ids.append(f"{ctx.run.exp_id}/teachers/{task}")
    return ids


def _train_options(opts: ProxyValidationOptions, config: str, values: dict):
    """Train options: config < the data, size and device of this job < `values`."""
    common = {"dataset": opts.dataset, "data_dir": opts.data_dir, "device": opts.device, "width": opts.width,
              "input_res": opts.input_res, "task_choice": opts.task_choice, "seed": opts.seed}
    return child_options("train", config, [common, values], "proxy validation")


def _proxy_scores(ctx: JobContext, name: str, overrides: dict, teachers, candidates: list[dict], state: dict) -> None:
    opts = ctx.opts
    objective = ProxyObjective.from_options(opts, ctx.run.exp_root, teachers=teachers,
                                            max_population=opts.max_population, **overrides)
    start = time.perf_counter()
    objective.load(ctx.device)
    cache_seconds = time.perf_counter() - start
    # each candidate scored on the masks its full trainings use (share_fixed's exact blocks, its own seed)
    params = [rescoring_params(c["partition"]) for c in candidates]
    start = time.perf_counter()
    results = objective.evaluate_batch(params, [opts.seed] * len(candidates))
    seconds = time.perf_counter() - start
    sched = objective.schedule
    state["budgets"][name] = {"steps": sched.steps, "batch_size": sched.batch_size, "lr": sched.lr,
                              "lr_drop_steps": list(sched.lr_drop_steps), "val_images": objective.val_images,
                              "seconds_per_candidate": seconds / len(candidates), "cache_seconds": cache_seconds}
    state["proxy"][name] = [_plain(r) for r in results]
    ctx.log.info("proxy budget %s: %d candidates in %.1f s (cache %.1f s); scores %s", name, len(candidates),
                 seconds, cache_seconds, " ".join(f"{r['score']:.3f}" for r in results))
    ctx.checkpoint(state, len(state["proxy"]) + len(state["full"]))


def _full_training(ctx: JobContext, tasks: list[str], candidate: dict, seed: int) -> dict:
    opts = ctx.opts
    path = ctx.run.path / "partitions" / f"{candidate['id']}.json"
    values = {"model": "partitioned_resnet26", "partition": str(path), "partition_layers": opts.partition_layers,
              "seed": seed, **opts.full_options}
    results = run_nested("train", _train_options(opts, opts.full_config, values), ctx.run.exp_root,
                         f"{ctx.run.exp_id}/full/{candidate['id']}_s{seed}", stop=ctx.stop,
                         note=f"full training for {ctx.run.exp_id}")
    accuracy = {t: float(results["val_accuracy"][t]) for t in tasks}
    ctx.log.info("full training %s seed %d: mean val accuracy %.4f", candidate["id"], seed,
                 sum(accuracy.values()) / len(accuracy))
    return {"accuracy": accuracy}


def raw_data(opts: ProxyValidationOptions, tasks: list[str], candidates: list[dict], state: dict) -> dict:
    """The raw data file: per candidate its partition, resource, full-training and proxy numbers."""
    spec = get_dataset(opts.dataset)
    rows = []
    for k, c in enumerate(candidates):
        runs = [state["full"][f"{c['id']}_s{s}"]["accuracy"] for s in opts.full_seeds]
        accuracy = {t: float(np.mean([r[t] for r in runs])) for t in tasks}
        per_task = {t: a / spec.domain(t).proxy_reference for t, a in accuracy.items()}
        per_seed = [float(np.mean([r[t] / spec.domain(t).proxy_reference for t in tasks])) for r in runs]
        rows.append({"id": c["id"], "preset": c["preset"], "raw": c["partition"].raw[0].tolist(),
                     "resource": float(np.mean(c["partition"].channel_use())),
                     "full": {"score": float(np.mean(list(per_task.values()))), "per_task": per_task,
                              "accuracy": accuracy, "seeds": list(opts.full_seeds), "seed_scores": per_seed},
                     "proxy": {name: results[k] for name, results in state["proxy"].items()}})
    return {"tasks": tasks, "dataset": opts.dataset, "bootstrap": opts.bootstrap, "bootstrap_seed": opts.seed,
            "budgets": state["budgets"], "candidates": rows, "full_config": opts.full_config,
            "full_options": opts.full_options}


def _plain(result: dict) -> dict:
    """The JSON-able part of a proxy result (floats and dicts of floats)."""
    keys = ("score", "per_task", "accuracy", "kl", "teacher_accuracy", "loss", "resource")
    return {k: result[k] for k in keys}
