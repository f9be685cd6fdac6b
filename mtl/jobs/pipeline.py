"""The pipeline job: backbone -> teachers -> ES search -> random search -> proxy scores -> retrain -> one table.

    python main.py -e demo --config exp.demo          # the task-families benchmark on a CPU (make demo)
    python main.py -e full --config exp.pipeline      # Visual Decathlon on a GPU machine
    python main.py -e demo --continue                 # after a crash: finished stages are skipped

Stages are nested runs under exp/<id>/ started in this process through the job functions
(mtl/jobs/nested.py): backbone (the ImageNet model every training and the proxy's student start from;
mtl/jobs/pipeline_backbone.py), teachers/<task> (single-task train runs), search (ES with the objective),
random_search (same budget), proxy_scores (every final partition scored by the objective with one
seed), retrain/<variant>/s<k> (multi-task training of the best partitions, the baselines and, on a
dataset with task families, the families oracle, --retrain_seeds seeds each).
A stage that is done is skipped; one that was cut short continues from its own checkpoint.
The result is table.md / table.json (every seed's result; the summary is recomputable from them) and
pareto.png in the run folder: per-task accuracy (mean ± std), the share_fixed curve at each variant's
resource, decathlon-style score, resource use, proxy score, and the structure the searches recovered.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl.data.domains import task_families
from mtl.errors import UserError
from mtl.jobs import register_job
from mtl.runner.context import JobContext
from mtl.runner.nested import nested_done
from mtl.jobs.pipeline_backbone import backbone_stage
from mtl.jobs.pipeline_options import PipelineOptions
from mtl.jobs.pipeline_plots import plot_pareto
from mtl.jobs.pipeline_submission import write_pipeline_submission
from mtl.jobs.pipeline_table import SEARCHED, build_table, render_table, teachers_row, variant_row
from mtl.runner.child_options import child_options, child_values
from mtl.runner.children import Child, run_children
from mtl.meta.objectives import get_objective
from mtl.meta.partition import Partition, load_partition, preset, rescoring_params, save_partition
from mtl.meta.results_store import ResultsStore
from mtl.meta.structure import family_overlap
from mtl.models.resnet import STAGE_WIDTHS
from mtl.util.atomic import atomic_write_json


LAST_STAGE_WIDTH = STAGE_WIDTHS[-1]


@register_job("pipeline", PipelineOptions)
def run_pipeline(ctx: JobContext) -> dict:
    """Run every stage (skipping finished ones), then write and print the table."""
    opts, log = ctx.opts, ctx.log
    tasks = opts.task_names()
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    log.info("pipeline over %s: teachers, search (%s, budget %d)%s, retrain", ", ".join(tasks), opts.objective,
             opts.budget, ", random search" if opts.random_search else "")
    backbone, base = backbone_stage(ctx, _stage, {"write_submission": True} if opts.submission else {})
    teachers = _train_stages(ctx, {t: (f"teachers/{t}", opts.teacher_config, [base, *_teacher_layers(opts, t)])
                                   for t in tasks})
    teacher_ids = [f"{ctx.run.exp_id}/teachers/{t}" for t in tasks]
    searches = {"es_best": _search_spec(ctx, "search", teacher_ids, backbone=backbone)}
    if opts.random_search:
        searches["random_best"] = _search_spec(ctx, "random_search", teacher_ids, backbone=backbone,
                                               optimizer="random",
                                               optimizer_options={"batch_size": opts.random_batch_size})
    _side_by_side(ctx, searches)  # ES and random search are independent: two at a time with --parallel_stages
    searches = {name: _stage_name(ctx, stage) for name, stage in searches.items()}
    partitions = _final_partitions(ctx, tasks, searches)
    proxy = _proxy_scores(ctx, teacher_ids, partitions, backbone)
    retrains = _train_stages(ctx, {
        (name, seed): (f"retrain/{name}/s{seed}", opts.retrain_config,
                       [base, {"model": "partitioned_resnet26", "partition": str(path)},
                        {"write_submission": True} if opts.submission and name == "es_best" else {},
                        opts.train_options, opts.retrain_options, {"seed": seed}])
        for name, path in partitions.items() for seed in retrain_seeds(opts)})
    if opts.submission:  # the ES best's first retrain seed predicts the test split
        write_pipeline_submission(ctx.run.path, ctx.run.exp_root, backbone, f"es_best/s{retrain_seeds(opts)[0]}", log)
    table = _table(ctx, tasks, teachers, retrains, partitions, proxy, backbone)
    text = render_table(table)
    (ctx.run.path / "table.md").write_text(text + "\n")
    atomic_write_json(ctx.run.path / "table.json", table)
    plot_pareto(table, ctx.run.path / "pareto.png")
    print(text, flush=True)
    log.info("table written to %s (pareto.png beside it)", ctx.run.path / "table.md")
    return {"table": table, "tasks": tasks, "stages": _stage_ids(ctx, tasks, searches, partitions)}


def retrain_seeds(opts: PipelineOptions) -> list[int]:
    """The training seeds of every retrained variant: --retrain_seeds of them, derived from --seed."""
    return [opts.seed * 1000 + k for k in range(opts.retrain_seeds)]


def _table(ctx: JobContext, tasks: list[str], teachers: dict, retrains: dict, partitions: dict[str, Path],
           proxy: dict[str, dict], backbone: str) -> dict:
    """Per-seed rows of every variant, plus the within/cross-family overlap of the searched partitions."""
    opts = ctx.opts
    rows = [teachers_row(tasks, teachers, opts.dataset)]
    for name, path in partitions.items():
        seeds = [{"seed": seed, "accuracy": retrains[name, seed]["val_accuracy"],
                  "decathlon_score": retrains[name, seed]["decathlon_score"]} for seed in retrain_seeds(opts)]
        first = retrains[name, retrain_seeds(opts)[0]]
        channels = float(np.mean(load_partition(path, tasks).channel_use()))
        params = float(np.mean([first["resources"][t]["params"] for t in tasks]))
        rows.append(variant_row(name, seeds, channels, params, proxy.get(name, {}).get("score"), tasks, opts.dataset))
    settings = {**_settings(opts, ctx), "backbone": backbone}
    return build_table(tasks, rows, settings, _structure(opts, tasks, partitions, settings))


def _structure(opts: PipelineOptions, tasks: list[str], partitions: dict[str, Path], settings: dict) -> dict:
    """Realised within- vs cross-family overlap of the searched partitions and the oracle (datasets with
    task families only), at the channel count of the retrains' last stage."""
    families = task_families(opts.dataset, tasks)
    if len(set(families)) < 2 or not all(families):
        return {}
    channels = max(1, round(LAST_STAGE_WIDTH * settings["width"]))
    return {name: family_overlap(load_partition(partitions[name], tasks), families, channels)
            for name in ("families", *SEARCHED) if name in partitions}


# -- stages ------------------------------------------------------------------------------------


def _stage(ctx: JobContext, job: str, name: str, config: str, layers: list[dict],
           replace: dict | None = None) -> dict[str, Any]:
    """Options from `config` < the pipeline's common options < `layers` (< `replace`, not merged); run it."""
    return _run_stage(ctx, _stage_spec(ctx, job, name, config, layers, replace))


def _run_stage(ctx: JobContext, stage: Child) -> dict[str, Any]:
    ctx.log.info("stage %s (%s)", _stage_name(ctx, stage), stage.job)
    return run_children([stage], ctx.run.exp_root, stop=ctx.stop, log=ctx.log)[0]


def _train_stages(ctx: JobContext, specs: dict[str, tuple[str, str, list[dict]]]) -> dict[str, dict[str, Any]]:
    """Independent train stages (key -> (name, config, layers)); their results by key."""
    return _side_by_side(ctx, {key: _stage_spec(ctx, "train", *spec) for key, spec in specs.items()})


def _side_by_side(ctx: JobContext, stages: dict[Any, Child]) -> dict[Any, dict[str, Any]]:
    """Independent stages: one after the other, or --parallel_stages at a time in worker processes
    (same runs, same numbers); their results by key."""
    done = _run_parallel(ctx, stages) if ctx.opts.parallel_stages > 1 else {}
    return {key: done[key] if key in done else _run_stage(ctx, stage) for key, stage in stages.items()}


def _run_parallel(ctx: JobContext, stages: dict[Any, Child]) -> dict[Any, dict[str, Any]]:
    """The stages not done yet, in worker processes; their results by key ({} when fewer than two are
    left: those run in-process, without starting workers)."""
    to_run = [key for key, s in stages.items()
              if _runs_in_a_worker(s) and not nested_done(s.job, s.opts, ctx.run.exp_root, s.exp_id)]
    if len(to_run) <= 1:
        return {}
    ctx.stop.raise_if_requested()
    workers = min(ctx.opts.parallel_stages, len(to_run))
    ctx.log.info("stages %s (%s), %d at a time", ", ".join(_stage_name(ctx, stages[k]) for k in to_run),
                 ", ".join(sorted({stages[k].job for k in to_run})), workers)
    results = run_children([stages[k] for k in to_run], ctx.run.exp_root, stop=ctx.stop, log=ctx.log,
                           workers=workers, device=ctx.device, threads=ctx.opts.num_threads)
    return dict(zip(to_run, results))


def _runs_in_a_worker(stage: Child) -> bool:
    """A worker process cannot start processes of its own: a search with a local or Ray pool runs here."""
    return getattr(stage.opts, "backend", "inprocess") == "inprocess"


def _stage_name(ctx: JobContext, stage: Child) -> str:
    return stage.exp_id.removeprefix(f"{ctx.run.exp_id}/")


def _stage_spec(ctx: JobContext, job: str, name: str, config: str, layers: list[dict],
                replace: dict | None = None) -> Child:
    opts = ctx.opts
    common = {"dataset": opts.dataset, "task_choice": opts.task_choice, "data_dir": opts.data_dir,
              "device": opts.device, "seed": opts.seed}
    stage_opts = child_options(job, config, [common, *layers], f"pipeline stage {name}", replace)
    return Child(job, stage_opts, f"{ctx.run.exp_id}/{name}", note=f"pipeline {ctx.run.exp_id}")


def _teacher_layers(opts: PipelineOptions, task: str) -> list[dict]:
    return [{"task_choice": task, "model": "resnet26"}, opts.train_options, opts.teacher_options]


def _search_spec(ctx: JobContext, name: str, teacher_ids: list[str], backbone: str = "none",
                 **replace: Any) -> Child:
    """A search stage: the search config < the pipeline's search_options < budget, objective (not merged)
    < `replace`. Random search and the proxy scores keep the ES stage's settings but not its optimizer's."""
    opts = ctx.opts
    layer = dict(opts.search_options)
    if "optimizer" in replace:
        layer = {k: v for k, v in layer.items() if k not in ("optimizer", "optimizer_options")}
    fixed = {"budget": opts.budget, "objective": opts.objective,
             "objective_options": _objective_options(opts, teacher_ids, backbone)}
    return _stage_spec(ctx, "search", name, opts.search_config, [layer], replace={**fixed, **replace})


def _objective_options(opts: PipelineOptions, teacher_ids: list[str], backbone: str = "none") -> dict:
    """The objective's options, with the teachers' run names when it takes `teachers` and none were given,
    and the backbone as the student's initial weights (as the original's) when it takes `student_init`."""
    options = dict(opts.objective_options)
    try:
        factory = get_objective(opts.objective)
    except (KeyError, ImportError) as err:
        raise UserError(f"--objective {opts.objective}: {err}") from None
    takes = getattr(factory, "from_search", None) or factory
    parameters = inspect.signature(takes).parameters
    if "teachers" not in options and "teachers" in parameters:
        options["teachers"] = list(teacher_ids)
    if "student_init" not in options and "student_init" in parameters and backbone != "none":
        options["student_init"] = backbone
    return options


def _final_partitions(ctx: JobContext, tasks: list[str], searches: dict[str, str]) -> dict[str, Path]:
    """Baselines and the searches' best partitions, saved as partition files under exp/<id>/partitions/."""
    opts = ctx.opts
    folder = ctx.run.path / "partitions"
    folder.mkdir(exist_ok=True)
    found: dict[str, Partition] = {}
    for name in opts.baselines:
        found[name] = preset(name, len(tasks), seed=opts.seed)
    for share in opts.share_fixed:
        found[f"share_fixed_{share:g}"] = preset("share_fixed", len(tasks), share_amt=share, seed=opts.seed)
    families = task_families(opts.dataset, tasks)
    if opts.oracle and all(families) and len(set(families)) > 1:  # a reference row: nothing searched uses it
        found["families"] = preset("families", len(tasks), seed=opts.seed, families=families)
    for name, stage in searches.items():
        best = ctx.run.path / stage / "best_partition.json"
        if not best.exists():
            raise UserError(f"stage {stage} found no partition (every evaluation failed?); see "
                            f"{ctx.run.path / stage / 'log.txt'}.")
        found[name] = load_partition(best, tasks)
    paths = {}
    for name, partition in found.items():
        partition.tasks = list(tasks)
        paths[name] = folder / f"{name}.json"
        save_partition(partition, paths[name])
    return paths


def _proxy_scores(ctx: JobContext, teacher_ids: list[str], partitions: dict[str, Path],
                  backbone: str = "none") -> dict[str, dict]:
    """Every final partition scored by the objective in one runner search (same seed: a fair comparison)."""
    # each scored on the masks its retrains use
    variants = {name: rescoring_params(load_partition(path)) for name, path in partitions.items()}
    _run_stage(ctx, _search_spec(ctx, "proxy_scores", teacher_ids, backbone=backbone, optimizer="runner",
                                 optimizer_options={"variants": variants, "trials": 1}, budget=len(variants),
                                 search_partition=True, fixed_fraction=0.0, hyperparameters=[],
                                 hyperparameters_file=""))
    with ResultsStore(ctx.run.path / "proxy_scores" / "results.sqlite") as store:
        rows = store.evaluations()
    return {e.candidate_id.split("/", 1)[1]: {"score": e.score, "per_task": e.per_task} for e in rows if e.ok}


def _settings(opts: PipelineOptions, ctx: JobContext) -> dict[str, Any]:
    """What the table's caption states: data, model size, schedules, search budget."""
    def train_values(config: str, *layers: dict) -> dict:
        return child_values("train", config, list(layers), "pipeline settings")

    teacher = train_values(opts.teacher_config, opts.train_options, opts.teacher_options)
    retrain = train_values(opts.retrain_config, opts.train_options, opts.retrain_options)
    device = ctx.device.type if opts.device == "auto" else opts.device
    return {"dataset": opts.dataset, "device": device, "objective": opts.objective, "budget": opts.budget,
            "seed": opts.seed, "retrain_seeds": opts.retrain_seeds,
            "width": retrain.get("width", 1.0), "input_res": retrain.get("input_res", 72),
            "teacher_steps": teacher.get("num_rounds", 1) * teacher.get("train_iters", 0),
            "retrain_steps": retrain.get("num_rounds", 1) * retrain.get("train_iters", 0),
            "partition_layers": retrain.get("partition_layers", "last_stage_conv1")}


def _stage_ids(ctx: JobContext, tasks, searches, partitions) -> dict[str, Any]:
    base = ctx.run.exp_id
    return {"backbone": f"{base}/backbone" if not ctx.opts.backbone else ctx.opts.backbone,
            "teachers": [f"{base}/teachers/{t}" for t in tasks],
            "searches": [f"{base}/{s}" for s in searches.values()], "proxy_scores": f"{base}/proxy_scores",
            "retrain": [f"{base}/retrain/{n}/s{s}" for n in partitions for s in retrain_seeds(ctx.opts)]}
