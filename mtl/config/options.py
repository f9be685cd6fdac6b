"""Option dataclasses: every job kind declares its options as fields with a default and one line of help.

A field's metadata says whether it may change when a run is continued (`resume_safe`) and, optionally,
its allowed `choices`. `coerce_value` turns command-line strings and config values into the field's type.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from mtl.config.groups import (Group, canonical_set, deprecation_note, describe_group, group_value,
                               resolve_groups, storage_path)
from mtl.config.groups import type_name as groups_type_name
from mtl.errors import UserError


def option(default: Any, help: str, *, resume_safe: bool = False, choices: tuple | None = None,
           at_least: float | None = None, above: float | None = None, at_most: float | None = None,
           below: float | None = None, group: Group | None = None, type_name: str = "") -> Any:
    """A dataclass field with help text; list / dict defaults are copied per instance.

    `at_least` / `above` / `at_most` / `below` bound a number (checked when a value is set; every float
    option must also be finite). `group`: a dict option holding a plug-in's or a stage's typed options
    (mtl/config/groups.py). `type_name`: what --help calls the type.
    """
    bounds = {k: v for k, v in (("at_least", at_least), ("above", above), ("at_most", at_most),
                                ("below", below)) if v is not None}
    metadata = {"help": help, "resume_safe": resume_safe, "choices": choices, "bounds": bounds, "group": group,
                "type_name": type_name}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunOptions:
    """Options every job has."""

    seed: int = option(0, "random seed for weights, data order and augmentation")
    device: str = option("auto", "auto, cpu, cuda or cuda:N", resume_safe=True)
    data_dir: str = option("data", "dataset root (holds decathlon/ and mini_decathlon/)", resume_safe=True)
    checkpoint_every: int = option(100, "save a checkpoint every this many steps", resume_safe=True)
    keep_checkpoints: int = option(3, "how many recent checkpoints to keep besides the best", resume_safe=True)
    log_every: int = option(20, "write training scalars every this many steps", resume_safe=True)

    def check_inputs(self) -> None:
        """What the run needs from this machine (device, data, named files); UserError before the run
        folder is created. Separate from `validate`, which checks values only (saved configs are
        re-validated on other machines). Subclasses extend it."""
        from mtl.util.device import resolve_device

        resolve_device(self.device)

    def validate(self) -> None:
        """Group options typed against their schema, then cross-field checks; raise UserError. Subclasses
        extend it (calling this first)."""
        resolve_groups(self)
        for name in ("checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1 (got {getattr(self, name)}).")


def option_fields(cls: type) -> dict[str, dataclasses.Field]:
    """Name -> Field of an options dataclass, in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls)}


def field_types(cls: type) -> dict[str, Any]:
    """Name -> resolved type annotation of an options dataclass."""
    return typing.get_type_hints(cls)


def build_options(cls: type, values: dict[str, Any], source: str, notes: list[str] | None = None) -> Any:
    """An instance of `cls` from defaults updated with `values`, each coerced and checked, then validated.

    Args:
        cls: the job's options dataclass.
        values: option name, or a dotted path into a group (`method.alpha`), -> value (strings from the
            command line are parsed).
        source: where the values came from, for error messages ("config exp.dec", "command line").
        notes: collects deprecation notices for old spellings (None: old spellings are silent).
    """
    opts = cls()
    apply_values(opts, values, source, notes)
    opts.validate()
    return opts


def dotted(prefix: str, **values: Any) -> dict[str, Any]:
    """`{prefix}.{key}` -> value, for config modules: ``**dotted("optimizer", delta_size=0.1)``."""
    return {f"{prefix}.{key}": value for key, value in values.items()}


def apply_values(opts: Any, values: dict[str, Any], source: str, notes: list[str] | None = None) -> None:
    """Set each value on `opts` (in place): plain options coerced to their type and checked; a whole
    group replaced, a dotted key set inside its group (typed later by `resolve_groups`)."""
    cls = type(opts)
    fields = option_fields(cls)
    types = field_types(cls)
    for key, raw in values.items():
        path, new = storage_path(cls, key, source)
        if new and notes is not None:
            notes.append(deprecation_note(key, new))
        name = path[0]
        if fields[name].metadata.get("group"):
            value = group_value(cls, name, raw, source, notes) if len(path) == 1 else \
                canonical_set(getattr(opts, name), path[1:], raw)
            setattr(opts, name, value)
            continue
        if len(path) > 1:
            raise UserError(f"{source}: option {name!r} is not a mapping, so {key!r} cannot set a key of it.")
        value = coerce_value(name, types[name], raw, source)
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"{source}: {name} {value!r} is not one of {', '.join(map(str, choices))}.")
        check_bounds(name, value, fields[name].metadata.get("bounds") or {}, source)
        setattr(opts, name, value)


_BOUND_TEXT = {"at_least": ">=", "above": ">", "at_most": "<=", "below": "<"}


def check_bounds(name: str, value: Any, bounds: dict[str, float], source: str) -> None:
    """UserError unless the number `value` lies within `bounds` (see `option`)."""
    if not bounds or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    tests = {"at_least": lambda b: value >= b, "above": lambda b: value > b, "at_most": lambda b: value <= b,
             "below": lambda b: value < b}
    if not all(tests[kind](bound) for kind, bound in bounds.items()):
        rule = " and ".join(f"{_BOUND_TEXT[k]} {v:g}" for k, v in bounds.items())
        raise UserError(f"{source}: --{name} must be {rule} (got {value!r}).")


def _check_finite(name: str, value: Any, source: str) -> Any:
    """Numbers in dict options must be finite (nested dicts and lists too)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{source}: --{name}={value!r} is not a finite number.")
    if isinstance(value, dict):
        return {k: _check_finite(f"{name}.{k}", v, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_check_finite(name, v, source) for v in value]
    return value


def coerce_value(name: str, typ: Any, raw: Any, source: str) -> Any:
    """`raw` converted to `typ`: the one coercer of every option, plug-in option and stage option.

    Command-line strings are parsed for the type (`"1.5"` -> 1.5, `"on"` -> True, `"a,b"` -> a list);
    config values must already be of the type, except that an int is a valid float. A float must be
    finite and is never a bool; a str is never a bool, list or mapping; a bool is one of
    true/false/yes/no/on/off/1/0. `Any` (or an unknown class) takes the value, parsing strings as YAML.
    """
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        inner = [a for a in args if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            return None
        return coerce_value(name, inner[0], raw, source)
    try:
        return _coerce(name, typ, origin, args, raw, source)
    except (TypeError, ValueError):
        pass
    type_name = getattr(typ, "__name__", str(typ).replace("typing.", ""))
    raise UserError(f"{source}: {name}={raw!r} is not a valid {type_name}.")


coerce = coerce_value  # the short name


def _coerce(name: str, typ: Any, origin: Any, args: tuple, raw: Any, source: str) -> Any:
    if typ is bool:
        return _to_bool(raw)
    if typ is int:
        return _to_int(raw)
    if typ is float:
        value = float(raw) if not isinstance(raw, (bool, list, dict)) else _fail()
        if not math.isfinite(value):
            raise UserError(f"{source}: --{name}={raw!r} is not a finite number.")
        return value
    if typ is str:
        return str(raw) if not isinstance(raw, (bool, list, tuple, dict)) else _fail()
    if origin in (list, tuple, collections.abc.Sequence) or typ in (list, tuple):
        item = args[0] if args and args[0] is not Ellipsis else Any
        return [coerce_value(name, item, v, source) for v in _to_list(raw)]
    if origin in (dict, collections.abc.Mapping) or typ is dict:
        value = _parse_scalar(raw) if isinstance(raw, str) else raw
        return _check_finite(name, dict(value), source) if isinstance(value, dict) else _fail()
    return _check_finite(name, _parse_scalar(raw) if isinstance(raw, str) else raw, source)


def _fail() -> Any:
    raise ValueError


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, float):
        if not raw.is_integer():
            raise ValueError
        return int(raw)
    return int(raw)


def _to_list(raw: Any) -> list:
    if isinstance(raw, (list, tuple)):
        return list(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            return list(json.loads(text))
        return [part.strip() for part in text.split(",") if part.strip()] if text else []
    return [raw]


def _parse_scalar(text: str) -> Any:
    # YAML accepts JSON and plain words, so `--method_options.alpha 1.5` and `{"a": 1}` both parse.
    # YAML 1.1 reads 1e-3, nan and inf as words: anything float() takes is a number here.
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def coerce_settings(values: dict[str, Any], hints: dict[str, Any], what: str) -> dict[str, Any]:
    """A dict's entries coerced to the types its consumer declares (`hints`: key -> type) by the one
    coercer; keys without a declared type pass unchanged (the consumer reports unknown keys)."""
    return {key: coerce_value(f"{what}.{key}", hints[key], value, "options") if key in hints else value
            for key, value in values.items()}


def describe_options(opts: Any) -> list[tuple[str, str, Any, str, bool]]:
    """(name, type name, current value, help, resume-safe) of every option, for --help; a group gives
    one row per typed entry of the chosen plug-in (`method.alpha`), a stage group one row."""
    types = field_types(type(opts))
    rows = []
    for name, fld in option_fields(type(opts)).items():
        safe = bool(fld.metadata.get("resume_safe"))
        if fld.metadata.get("group"):
            rows += [(*row, safe) for row in describe_group(opts, name, fld.metadata.get("help", ""))]
            continue
        type_name = fld.metadata.get("type_name") or groups_type_name(types[name])
        rows.append((name, type_name, getattr(opts, name), fld.metadata.get("help", ""), safe))
    return rows
