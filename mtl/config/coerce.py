"""The one coercer: command-line strings and config values to an option's type, with bounds checked.

Used for plain options, plug-in options and method options alike: a float rejects a bool, a str
rejects a list, a bool takes on/off/yes/no/true/false/1/0.
"""

from __future__ import annotations

import collections.abc
import math
import typing
from typing import Any

import yaml

from mtl.errors import UserError


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
        return [coerce_value(name, item, v, source) for v in _to_list(raw, item)]
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


def _to_list(raw: Any, item: Any = Any) -> list:
    if isinstance(raw, (list, tuple)):
        return list(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):  # a YAML flow list: JSON, or unquoted words ([share_all,independent])
            # Scalar items stay strings (no octal 010, no yes -> True): their own type decides. Others
            # (graph_model's node dicts) keep YAML's numbers.
            loader = yaml.BaseLoader if item in (str, int, float, bool) else yaml.SafeLoader
            try:
                return list(yaml.load(text, Loader=loader))
            except yaml.YAMLError as err:
                raise ValueError(text) from err
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
