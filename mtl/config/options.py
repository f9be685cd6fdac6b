"""Option dataclasses: every job kind declares its options as fields with a default and one line of help.

A field's metadata says whether it may change when a run is continued (`resume_safe`) and, optionally,
its allowed `choices`. `coerce_value` turns command-line strings and config values into the field's type.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from mtl.errors import UserError
from mtl.registry import unknown_name_message


def option(default: Any, help: str, *, resume_safe: bool = False, choices: tuple | None = None,
           at_least: float | None = None, above: float | None = None, at_most: float | None = None,
           below: float | None = None) -> Any:
    """A dataclass field with help text; list / dict defaults are copied per instance.

    `at_least` / `above` / `at_most` / `below` bound a number (checked when a value is set; every float
    option must also be finite).
    """
    bounds = {k: v for k, v in (("at_least", at_least), ("above", above), ("at_most", at_most),
                                ("below", below)) if v is not None}
    metadata = {"help": help, "resume_safe": resume_safe, "choices": choices, "bounds": bounds}
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
        """Cross-field checks; raise UserError. Subclasses extend it."""
        for name in ("checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1 (got {getattr(self, name)}).")


def option_fields(cls: type) -> dict[str, dataclasses.Field]:
    """Name -> Field of an options dataclass, in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls)}


def field_types(cls: type) -> dict[str, Any]:
    """Name -> resolved type annotation of an options dataclass."""
    return typing.get_type_hints(cls)


def build_options(cls: type, values: dict[str, Any], source: str) -> Any:
    """An instance of `cls` from defaults updated with `values`, each coerced and checked.

    Args:
        cls: the job's options dataclass.
        values: option name (or `name.key` for dict options) -> value (strings from the command line
            are parsed).
        source: where the values came from, for error messages ("config exp.dec", "command line").
    """
    opts = cls()
    apply_values(opts, values, source)
    opts.validate()
    return opts


def apply_values(opts: Any, values: dict[str, Any], source: str) -> None:
    """Set each value on `opts` after coercing it to its field's type (in place)."""
    fields = option_fields(type(opts))
    types = field_types(type(opts))
    for key, raw in values.items():
        name, _, subkey = key.partition(".")
        if name not in fields:
            raise UserError(f"{source}: {unknown_name_message('option', name, fields)}. "
                            "`--help` with the config lists every option.")
        if subkey:
            target = getattr(opts, name)
            if not isinstance(target, dict):
                raise UserError(f"{source}: option {name!r} is not a mapping, so {key!r} cannot set a key of it.")
            target[subkey] = _check_finite(key, _parse_scalar(raw) if isinstance(raw, str) else raw, source)
            continue
        value = coerce_value(name, types[name], raw, source)
        if isinstance(value, dict):
            value = {k: _check_finite(f"{name}.{k}", v, source) for k, v in value.items()}
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise UserError(f"{source}: {name}={value!r} is not one of {', '.join(map(str, choices))}.")
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
    """`raw` converted to `typ` (bool, int, float, str, list[...], dict, Optional[...])."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        inner = [a for a in args if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            return None
        return coerce_value(name, inner[0], raw, source)
    try:
        if typ is bool:
            return _to_bool(raw)
        if typ is int:
            return _to_int(raw)
        if typ is float:
            value = float(raw) if not isinstance(raw, bool) else _fail()
            if not math.isfinite(value):
                raise UserError(f"{source}: --{name}={raw!r} is not a finite number.")
            return value
        if typ is str:
            return str(raw) if not isinstance(raw, (list, dict)) else _fail()
        if origin is list:
            items = _to_list(raw)
            return [coerce_value(name, args[0] if args else str, item, source) for item in items]
        if origin is dict or typ is dict:
            value = _parse_scalar(raw) if isinstance(raw, str) else raw
            return dict(value) if isinstance(value, dict) else _fail()
    except (TypeError, ValueError):
        pass
    type_name = getattr(typ, "__name__", str(typ))
    raise UserError(f"{source}: {name}={raw!r} is not a valid {type_name}.")


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
    """A dict option's entries converted to the types its consumer declares (`hints`: key -> type), so
    `--optimizer_options.learning_rate abc` fails here, naming the key, and not inside the run. Keys
    without a declared type pass unchanged (the consumer reports unknown keys)."""
    converted = {}
    for key, value in values.items():
        typ = hints.get(key)
        converted[key] = coerce_value(f"{what}.{key}", typ, value, "command line") if typ in (bool, int, float) \
            else value
    return converted


def describe_options(opts: Any) -> list[tuple[str, str, Any, str]]:
    """(name, type name, current value, help) of every option, for --help."""
    types = field_types(type(opts))
    rows = []
    for name, fld in option_fields(type(opts)).items():
        typ = types[name]
        type_name = getattr(typ, "__name__", None) or str(typ).replace("typing.", "")
        rows.append((name, type_name, getattr(opts, name), fld.metadata.get("help", "")))
    return rows
