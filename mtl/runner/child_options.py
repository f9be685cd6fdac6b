"""The options of a child run (a pipeline stage, a search trial, a proxy-validation training): a config
module's options, then the parent's layers over it, validated once.

    values = child_values("train", "exp.families", [common, opts.retrain_options], "pipeline stage retrain")
    opts = child_options("train", "exp.families", [common, {"seed": 1}], "pipeline stage retrain")

A layer names options as a user does (`num_rounds`, `method.alpha`, `method_options`); a group option
updates the one below it key by key, so `--retrain.method.alpha` keeps the config's other method options.
"""

from __future__ import annotations

from typing import Any

from mtl.config.groups import layered
from mtl.config.loader import load_config
from mtl.config.options import build_options
from mtl.errors import UserError
from mtl.jobs import get_job


def child_values(job: str, config: str, layers: list[dict], where: str) -> dict[str, Any]:
    """Option values of a `job` run: config `config` < each of `layers`; a config of another job kind is
    a user error."""
    spec = load_config(config)
    if spec.job != job:
        raise UserError(f"{where}: config {config} is a {spec.job!r} job, not a {job!r} job.")
    return layered(get_job(job).options_cls, [spec.options, *layers], f"{where} ({config})")


def child_options(job: str, config: str, layers: list[dict], where: str, replace: dict | None = None):
    """The validated options of a `job` run: `child_values`, then `replace` (set as given, not merged)."""
    values = child_values(job, config, layers, where)
    values.update(replace or {})
    return build_options(get_job(job).options_cls, values, f"{where} ({config})")
