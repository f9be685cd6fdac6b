"""The search job's building blocks: its space, meta-optimizer and objective, built from SearchOptions.

Used by the search job (mtl/jobs/search.py) and by `SearchOptions.validate`, which refuses unknown
optimizers and objectives and bad settings before a run folder exists. Nothing here imports the
options module (only for type hints), so the options can import it.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtl.config.coerce import coerce_settings
from mtl.errors import UserError
from mtl.meta.objectives import get_objective, objective_names
from mtl.meta.optimizers import OPTIMIZERS, MetaOptimizer, create_optimizer
from mtl.meta.optimizers.es import ESOptions
from mtl.meta.space import PartitionBlock, Space, parse_hyperparameters
from mtl.registry import unknown_name_message

if TYPE_CHECKING:
    from mtl.runner.context import JobContext
    from mtl.jobs.search_options import SearchOptions


def build_space(opts: SearchOptions) -> Space:
    """Partition block over the chosen tasks (when searched), then the hyperparameter ranges."""
    blocks: list = []
    if opts.search_partition:
        blocks.append(PartitionBlock(tuple(opts.task_names()), restrict_amt=opts.restrict_amt,
                                     fixed_fraction=opts.fixed_fraction))
    lines = list(opts.hyperparameters)
    if opts.hyperparameters_file:
        try:
            lines += Path(opts.hyperparameters_file).read_text().splitlines()
        except OSError as err:
            raise UserError(f"--hyperparameters_file {opts.hyperparameters_file}: {err.strerror}.") from None
    blocks += parse_hyperparameters("\n".join(lines))
    if not blocks and opts.optimizer != "runner":
        raise UserError("the search space is empty: search the partition (--search_partition true) and/or give "
                        "--hyperparameters / --hyperparameters_file (only --optimizer runner needs none).")
    return Space(tuple(blocks))


def build_optimizer(opts: SearchOptions, space: Space, planned_budget: int | None = None) -> MetaOptimizer:
    """The meta-optimizer named by opts.optimizer with opts.optimizer_options; UserError when they are wrong.

    planned_budget: the budget a continued Nevergrad search planned for when it started (kept when
    --budget grows, so that its candidates do not change); None: opts.budget.
    """
    if opts.optimizer not in OPTIMIZERS:
        known = OPTIMIZERS.available()
        raise UserError(f"--optimizer: {unknown_name_message('meta-optimizer', opts.optimizer, known)}")
    if opts.optimizer == "nevergrad":
        if opts.optimizer_options:
            raise UserError("--optimizer nevergrad takes --nevergrad_optimizer, --nevergrad_population and "
                            "--nevergrad_budget, not --optimizer_options (a config that sets ES options: add "
                            "--optimizer_options {}).")
        settings = {"optimizer": opts.nevergrad_optimizer, "population": opts.nevergrad_population,
                    "budget": opts.nevergrad_budget or planned_budget or opts.budget}
    else:
        settings = coerce_settings(opts.optimizer_options, _optimizer_hints(opts.optimizer), "optimizer_options")
        if opts.optimizer == "runner":
            settings.setdefault("tasks", opts.task_names())  # crossed with the variants when per_task
    try:
        return create_optimizer(opts.optimizer, space, seed=opts.seed, **settings)
    except (TypeError, ValueError) as err:
        accepted = ", ".join(optimizer_option_names(opts.optimizer)) or "none"
        raise UserError(f"--optimizer_options for {opts.optimizer}: {err} (its options: {accepted}).") from None


def optimizer_option_names(name: str) -> list[str]:
    """The settings a registered meta-optimizer accepts (for error messages)."""
    cls = OPTIMIZERS.get(name)
    if name.startswith("es"):
        return [f.name for f in dataclasses.fields(ESOptions)]
    if name == "nevergrad":
        return ["--nevergrad_optimizer", "--nevergrad_population", "--nevergrad_budget"]
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "space", "seed")]


def _optimizer_hints(name: str) -> dict[str, Any]:
    cls = OPTIMIZERS.get(name)
    return typing.get_type_hints(ESOptions if name.startswith("es") else cls.__init__)


def check_objective_options(opts: SearchOptions) -> None:
    """objective_options of the types the objective declares (UserError naming the key); nothing is built."""
    try:
        factory = get_objective(opts.objective)
    except ImportError:
        return  # reported when the objective is built
    target = factory if not hasattr(factory, "from_search") else None
    if target is None:
        return
    try:
        hints = typing.get_type_hints(target) if dataclasses.is_dataclass(target) else \
            typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    except (NameError, TypeError):
        return
    coerce_settings(dict(opts.objective_options), hints, "objective_options")


def check_objective_name(name: str) -> None:
    """UserError (closest name first) unless `name` is a known objective."""
    if name not in objective_names():
        raise UserError(f"--objective: {unknown_name_message('objective', name, objective_names())}")


def build_objective(opts: SearchOptions, space: Space, ctx: JobContext | None = None):
    """The objective named by opts.objective, built from opts.objective_options.

    A plug-in either defines `from_search(space, options, context)` (it then decides everything), or
    is called as `factory(space=..., **objective_options)`, where constructor parameters named like a
    context entry (tasks, dataset, task_choice, data_dir, exp_root, run_id, device, seed) are filled
    from the search when objective_options does not set them.
    """
    try:
        factory = get_objective(opts.objective)
    except ImportError as err:
        raise UserError(f"objective {opts.objective!r} is not available here ({err}).") from None
    context = {
        "space": space, "tasks": list(space.tasks), "dataset": opts.dataset, "task_choice": opts.task_choice,
        "data_dir": str(Path(opts.data_dir).resolve()), "seed": opts.seed,
        "exp_root": str(ctx.run.exp_root.resolve()) if ctx else None, "run_id": ctx.run.exp_id if ctx else None,
        "device": str(ctx.device) if ctx else "cpu",
    }
    options = dict(opts.objective_options)
    if not hasattr(factory, "from_search"):
        check_objective_options(opts)
    if hasattr(factory, "from_search"):
        return factory.from_search(space, options, context)
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params and not takes_any]
    if unknown:
        accepted = [p for p in params if p not in context]
        raise UserError(f"--objective_options for {opts.objective}: unknown {', '.join(unknown)} "
                        f"(its options: {', '.join(accepted) or 'none'}).")
    injected = {k: v for k, v in context.items() if k in params and k not in options}
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in injected
               and k not in options and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if missing:
        raise UserError(f"objective {opts.objective} needs " + ", ".join(f"--objective_options.{k}" for k in missing)
                        + (" (single-task teacher runs: a comma list of exp/<id> or a teachers folder)"
                           if "teachers" in missing else "") + ".")
    try:
        return factory(**injected, **options)
    except (TypeError, ValueError) as err:
        raise UserError(f"objective {opts.objective}: {err}") from None
