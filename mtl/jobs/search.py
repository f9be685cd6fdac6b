"""The search job: a meta-optimizer proposes partitions / hyperparameters, an objective scores them.

    python main.py -e my_es --config exp.es_dist              # ES with the distillation proxy
    python main.py -e my_es --continue [--budget 20000]       # after a crash: nothing lost, nothing repeated

Every evaluation is a row of exp/<id>/results.sqlite (mtl/meta/results_store.py); the optimizer's state is
saved there after each generation, so `--continue` picks up exactly (mtl/meta/search_loop.py). At the end
(and when stopped) the report is written into the run folder: best_partition.json (usable with
`--partition`), pareto_front.json, progress.png, pareto_front.png, best_partition.png, report.md.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from mtl.errors import UserError
from mtl.jobs import register_job
from mtl.runner.context import JobContext
from mtl.runner.stop import active_stop
from mtl.jobs.search_options import SearchOptions
from mtl.jobs.search_setup import build_objective, build_optimizer, build_space
from mtl.meta.pool import DEVICE_ENV, make_pool
from mtl.meta.report import write_report
from mtl.meta.search_loop import run_search
from mtl.meta.results_store import ResultsStore

STORE_NAME = "results.sqlite"


@register_job("search", SearchOptions)
def run_search_job(ctx: JobContext) -> dict:
    """Run (or continue) the search until the budget is spent, then write the report."""
    opts, log = ctx.opts, ctx.log
    space = build_space(opts)
    store = ctx.run.path / STORE_NAME
    optimizer = build_optimizer(opts, space, planned_budget=_planned_budget(store))
    objective = build_objective(opts, space, ctx)
    if ctx.resuming and not store.exists():
        log.warning("%s is missing: the search starts again from its first evaluation", store)
    log.info("search: %s over %d coordinates (%s), objective %s, budget %d, backend %s", optimizer.name, space.dim,
             ", ".join(b.name for b in space.blocks), opts.objective, opts.budget, opts.backend)
    with _pool(opts, objective, ctx) as pool, active_stop(ctx.stop):  # trials run in-process see SIGTERM too
        summary = run_search(store, optimizer, pool=pool, budget=opts.budget, logger=log,
                             writer=_Scalars(ctx.tb), stop_flag=ctx.stop, max_retries=opts.max_retries)
    paths = write_report(store, ctx.run.path, title=f"Search {ctx.run.exp_id}")
    best = summary["best"]
    log.info("%d evaluations (%d failed), ended by %s; best %s; report in %s", summary["evaluations"],
             summary["failed"], summary["reason"],
             f"{best['candidate_id']} score {best['score']:.4f}" if best else "none", paths["report"])
    if summary["reason"] == "stopped":
        ctx.stop.raise_if_requested()
    if summary["evaluations"] and not summary["ok"]:
        raise UserError(f"every one of the {summary['evaluations']} evaluations failed, so the search has no "
                        f"result; the first error: {_first_error(store)} Fix the objective or its options "
                        f"(the errors are in {store}) and start a new run.")
    return {**summary, "store": STORE_NAME, "report": {k: p.name for k, p in paths.items()}}


def _first_error(path: Path) -> str:
    from mtl.meta.results_store import ResultsStore

    with ResultsStore(path) as store:
        failed = store.evaluations("failed")
    return (failed[0].error or "").strip().splitlines()[-1] if failed else "unknown"


def _planned_budget(store: Path) -> int | None:
    """The Nevergrad budget recorded when the search in `store` started (None: a new or other search)."""
    if not store.exists():
        return None
    with ResultsStore(store) as results:
        described = results.get_meta("search") or {}
    return described.get("options", {}).get("budget") if described.get("optimizer") == "nevergrad" else None


class _Scalars:
    """run_search's writer protocol (add_scalar) on the job's TensorBoard writer."""

    def __init__(self, tb):
        self.tb = tb

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.tb.scalar(tag, value, step)


@contextlib.contextmanager
def _pool(opts: SearchOptions, objective, ctx: JobContext) -> Iterator[Any]:
    """The worker pool of opts.backend; in-process objectives see the job's device through MTL_DEVICE."""
    if opts.backend == "inprocess":
        options: dict[str, Any] = {}
    elif opts.backend == "local":
        options = {"devices": list(opts.devices) or None, "num_workers": opts.num_workers or None}
    else:
        options = {"address": opts.ray_address or None, "num_cpus": opts.num_workers or None,
                   "cpus_per_eval": opts.cpus_per_eval, "gpus_per_eval": opts.gpus_per_eval}
    previous = os.environ.get(DEVICE_ENV)
    if opts.backend == "inprocess":
        os.environ[DEVICE_ENV] = str(ctx.device)
    try:
        pool = make_pool(opts.backend, objective, **options)
    except ImportError as err:
        raise UserError(f"--backend {opts.backend} needs an optional package ({err}); "
                        "pip install -e '.[ray]'") from None
    try:
        yield pool
    finally:
        pool.close()
        if opts.backend == "inprocess":
            if previous is None:
                os.environ.pop(DEVICE_ENV, None)
            else:
                os.environ[DEVICE_ENV] = previous
