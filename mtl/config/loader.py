"""Find and read named configs: `exp.dec` -> mtl/config/exp/dec.py, or a .yaml / .json file.

A config module sets ``JOB`` (the job kind) and ``OPTIONS`` (a dict of option values); its docstring
says what it runs and how. A YAML or JSON file holds the same: a ``job`` key and the options, either
at top level or under ``options``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import mtl.config
from mtl.errors import UserError
from mtl.registry import unknown_name_message

_FILE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class ConfigSpec:
    """A loaded config: its name, job kind, option values and one-line description."""

    name: str
    job: str
    options: dict[str, Any]
    description: str = ""


def load_config(name: str) -> ConfigSpec:
    """The config called `name` (module path under mtl/config or a .yaml/.json file path)."""
    if name.endswith(_FILE_SUFFIXES) or Path(name).is_file():
        return _load_file(Path(name))
    try:
        module = importlib.import_module(f"mtl.config.{name}")
    except ModuleNotFoundError as err:
        if not err.name or not f"mtl.config.{name}".startswith(err.name):
            raise
        raise UserError(f"--config: {unknown_name_message('config', name, available_configs())}. "
                        "`python main.py --list` shows every config.") from None
    if not hasattr(module, "JOB"):
        raise UserError(f"--config {name}: mtl/config/{name.replace('.', '/')}.py sets no JOB.")
    doc = (module.__doc__ or "").strip().splitlines()
    return ConfigSpec(name, module.JOB, dict(getattr(module, "OPTIONS", {})), doc[0] if doc else "")


def available_configs() -> list[str]:
    """Names of every config module under mtl/config (e.g. exp.dec), sorted."""
    prefix = "mtl.config."
    names = []
    for info in pkgutil.walk_packages(mtl.config.__path__, prefix=prefix):
        name = info.name[len(prefix):]
        if not info.ispkg and "." in name:
            names.append(name)
    return sorted(names)


def describe_configs() -> list[tuple[str, str, str]]:
    """(name, job kind, first docstring line) of every config module."""
    rows = []
    for name in available_configs():
        spec = load_config(name)
        rows.append((name, spec.job, spec.description))
    return rows


def _load_file(path: Path) -> ConfigSpec:
    if not path.is_file():
        raise UserError(f"--config {path}: no such file.")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise UserError(f"--config {path}: cannot be parsed ({err}).") from None
    if not isinstance(data, dict) or "job" not in data:
        raise UserError(f"--config {path}: expected a mapping with a 'job' key (e.g. job: train) and the options.")
    data = dict(data)
    job = str(data.pop("job"))
    description = str(data.pop("description", ""))
    options = data.pop("options", None)
    if options is None:
        options = data
    elif data:
        raise UserError(f"--config {path}: put options either at top level or under 'options', not both "
                        f"(found {', '.join(sorted(data))} beside 'options').")
    return ConfigSpec(str(path), job, dict(options), description)
