"""The methods_benchmark job: the same model trained with each MTL method, single-task baselines, one table.

Every run is a train-job child run in its own folder ``exp/<RUN>/<name>`` (``stl_<task>`` for the
baselines, the method name otherwise), run in a fresh process one after another so that each run's
time and peak memory are its own. A child that finished is reused when the benchmark is continued;
an unfinished one resumes from its checkpoint. The table (``methods_table.md`` and ``.json`` in the
run folder, also in results.json) states its conventions (see ``_NOTES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any

from mtl.config.groups import Group
from mtl.config.options import RunOptions, build_options, option
from mtl.errors import UserError
from mtl.jobs import register_job
from mtl.runner.children import Child, run_children
from mtl.runner.context import JobContext
from mtl.util.atomic import atomic_write_bytes, atomic_write_json, read_json
from mtl.util.run_dir import RunDir, resolve_run_path
from mtl.jobs.train_options import TrainOptions
from mtl.train.delta_m import delta_m, select_on_validation

ALL_METHODS = ["naive", "sum", "mean", "uncertainty", "dwa", "rlw", "famo", "gradnorm", "mgda", "mgda_ub",
               "pcgrad", "cagrad", "imtl_g", "nash_mtl", "upgrad", "graddrop", "aligned_mtl", "rotate_only",
               "rotograd", "rotograd_norm"]
_RUN_KEYS = ("seed", "device", "data_dir", "checkpoint_every", "keep_checkpoints", "log_every")


@dataclass
class MethodsBenchmarkOptions(RunOptions):
    """One train run per method (plus single-task baselines) with shared train options."""

    methods: list[str] = option(ALL_METHODS, "MTL methods to train, one run each (mtl/methods)")
    method_options: dict = option({}, "options per method, e.g. --method.gradnorm.alpha 1.5",
                                  group=Group("method", kind="method", named=True))
    train: dict = option({}, "train-job options every run shares, e.g. --train.train_iters 100",
                         group=Group("train", job="train"))
    baselines: bool = option(True, "train single-task baselines (resnet26, one per task) for Δm")
    equal_images: bool = option(True, "naive (one task per step) gets K x the steps and LR-drop steps, so "
                                "every run sees as many images per task")

    def validate(self) -> None:
        super().validate()
        if not self.methods:
            raise UserError("--methods lists no method to benchmark.")
        unknown = sorted(set(self.method_options) - set(self.methods))
        if unknown:
            raise UserError(f"--method_options names method(s) not benchmarked: {', '.join(unknown)}")
        for name, values in child_runs(self):
            build_options(TrainOptions, values, f"benchmark run {name!r}")


def child_runs(opts: MethodsBenchmarkOptions) -> list[tuple[str, dict[str, Any]]]:
    """(name, train option values) of every child run: baselines first, then the methods in order."""
    base = {key: getattr(opts, key) for key in _RUN_KEYS}
    base.update(opts.train)
    shared = build_options(TrainOptions, base, "--train")
    if shared.model == "graph":
        raise UserError("methods_benchmark trains resnet26 / partitioned_resnet26 models: single-task "
                        "baselines of a graph model are not derived automatically.")
    tasks = shared.task_names()
    runs = []
    if opts.baselines:
        for task in tasks:
            runs.append((f"stl_{task}", {**base, "task_choice": task, "model": "resnet26", "mtl_method": "naive",
                                         "method_options": {}, "grad_source": "shared"}))
    for method in opts.methods:
        values = {**base, "mtl_method": method, "method_options": dict(opts.method_options.get(method, {}))}
        if method == "naive":
            values["grad_source"] = "shared"
            if opts.equal_images:
                k = len(tasks)
                values["train_iters"] = shared.train_iters * k
                values["lr_drop_steps"] = [s * k for s in shared.lr_drop_steps]
        runs.append((method, values))
    return runs


@register_job("methods_benchmark", MethodsBenchmarkOptions)
def run_methods_benchmark(ctx: JobContext) -> dict:
    """Train every child run (reusing finished ones), then write the table; fails if a run failed."""
    runs = child_runs(ctx.opts)
    outcomes = {}
    for n, (name, values) in enumerate(runs):
        ctx.log.info("run %d/%d: %s", n + 1, len(runs), name)
        outcomes[name] = _run_child(ctx, name, values)
    tasks = build_options(TrainOptions, runs[-1][1], "--train").task_names()
    table = build_table(tasks, outcomes, ctx.opts.baselines)
    markdown = format_table(table)
    atomic_write_bytes(ctx.run.path / "methods_table.md", markdown.encode())
    atomic_write_json(ctx.run.path / "methods_table.json", table)
    ctx.log.info("methods table (%s):\n%s", ctx.run.path / "methods_table.md", markdown)
    failed = [name for name, outcome in outcomes.items() if outcome.get("status") != "done"]
    if failed:
        raise UserError(f"{len(failed)} run(s) did not finish: {', '.join(failed)}; their log.txt says why. "
                        f"The table has the others. Retry with: python main.py -e {ctx.run.exp_id} --continue")
    return {"tasks": tasks, "table": table}


def _run_child(ctx: JobContext, name: str, values: dict[str, Any]) -> dict[str, Any]:
    """Run (or reuse, or resume) child `name` in a fresh process, so that its time and peak memory are
    its own; its results, or a failure."""
    exp_id = f"{ctx.run.exp_id}/{name}"
    run = RunDir(resolve_run_path(ctx.run.exp_root, exp_id), exp_id)
    if run.read_status().get("state") == "done" and run.results_path.exists():
        # done, with options that differ at most in what a --continue may change (device, log_every, ...):
        # its time and memory figures are those of the real run, not of an empty resume
        ctx.log.info("  %s: done before, reusing its results", name)
        return {"status": "done", **read_json(run.results_path)}
    child = Child("train", build_options(TrainOptions, values, f"benchmark run {name!r}"), exp_id,
                  note=f"methods_benchmark {ctx.run.exp_id}")
    [outcome] = run_children([child], ctx.run.exp_root, stop=ctx.stop, log=ctx.log, workers=1, fresh=True,
                             keep_going=True, device=ctx.device)
    if "failed" in outcome:
        ctx.log.error("  %s failed: %s", name, outcome["failed"].strip().splitlines()[-1])
        return {"status": "failed", "error": outcome["failed"]}
    return {"status": "done", **outcome}


# ---- the table ----------------------------------------------------------------------------------
_NOTES = [
    "accuracy: validation top-1 at the round each run selects on validation (the mini-decathlon test split "
    "is unlabelled, as the decathlon's); multi-task runs select the round with the best validation Δm, "
    "baselines the round with their best validation accuracy",
    "Δm = 100/T Σ_t (acc_t − acc_STL,t) / acc_STL,t over the T tasks (one metric per task, so per-task-then-"
    "tasks and flat averaging agree); positive = better than the single-task baselines of this benchmark",
    "Δm last: the same at the last round (no selection)",
    "s/step: mean wall time of one training step, data loading included (a multi-task step holds one batch "
    "of every task, a naive or single-task step one batch); CPU s/step: the process's CPU time for the same "
    "(robust when other jobs share the cores); CPU ms/img divides it by the images in a step",
    "peak MB: CPU: resident memory added during training (VmHWM above the RSS at its start); CUDA: "
    "max_memory_allocated",
]


def build_table(tasks: list[str], outcomes: dict[str, dict[str, Any]], baselines: bool) -> dict[str, Any]:
    """Rows per run: selected accuracies, Δm (selected and last), time per step, peak memory."""
    base = {}
    if baselines:
        for task in tasks:
            result = outcomes.get(f"stl_{task}", {})
            if result.get("status") == "done":
                base[task] = max(h["val_accuracy"][task] for h in result["history"])
    complete = baselines and len(base) == len(tasks)
    rows = []
    for name, result in outcomes.items():
        if result.get("status") != "done":
            rows.append({"run": name, "status": result.get("status", "missing")})
            continue
        records = [{"val": h["val_accuracy"], "step": h["step"]} for h in result["history"]]
        own = list(result["val_accuracy"])
        score = (lambda v: delta_m(v, {t: base[t] for t in v})) if complete else (lambda v: fmean(v.values()))
        chosen = select_on_validation(records, score)
        perf = result.get("perf", {})
        per_step, cpu_per_step = perf.get("seconds_per_step"), perf.get("cpu_seconds_per_step")
        images = result.get("images_per_step")
        rows.append({
            "run": name, "status": "done", "method": result.get("method", {}).get("name", "naive"),
            "tasks": own, "selected_step": chosen["step"], "accuracy": chosen["val"],
            "delta_m": score(chosen["val"]) if complete and not name.startswith("stl_") else None,
            "delta_m_last": score(records[-1]["val"]) if complete and not name.startswith("stl_") else None,
            "seconds_per_step": per_step, "cpu_seconds_per_step": cpu_per_step,
            "cpu_ms_per_image": 1000 * cpu_per_step / images if cpu_per_step and images else None,
            "peak_memory_mb": perf.get("peak_memory_mb"), "memory": perf.get("memory"),
        })
    return {"tasks": tasks, "baselines": base, "rows": rows, "notes": _NOTES}


def format_table(table: dict[str, Any]) -> str:
    """The table as markdown, with its notes."""
    tasks = table["tasks"]
    head = ["run", *tasks, "Δm % (sel.)", "Δm % (last)", "s/step", "CPU s/step", "CPU ms/img", "peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table["rows"]:
        if row["status"] != "done":
            lines.append("| " + " | ".join([row["run"], *[row["status"]] * (len(head) - 1)]) + " |")
            continue
        accs = [f"{row['accuracy'][t]:.3f}" if t in row["accuracy"] else "" for t in tasks]
        cells = [row["run"], *accs, _fmt(row["delta_m"], "+.2f"), _fmt(row["delta_m_last"], "+.2f"),
                 _fmt(row["seconds_per_step"], ".3f"), _fmt(row["cpu_seconds_per_step"], ".3f"),
                 _fmt(row["cpu_ms_per_image"], ".2f"),
                 _fmt(row["peak_memory_mb"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {note}" for note in table["notes"]]) + "\n"


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
