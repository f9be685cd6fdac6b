"""Typed method options: building them from dicts (config files, command line) and value checks."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, Sequence

from mtl.config.coerce import coerce_value
from mtl.errors import UserError
from mtl.registry import unknown_name_message


def check_choice(option: str, value: Any, choices: Sequence[Any]) -> None:
    """UserError unless `value` is one of `choices` (used by the options dataclasses)."""
    if value not in choices:
        raise UserError(f"method option {option}={value!r} is not one of {', '.join(map(repr, choices))}")


def check_positive(option: str, value: float, allow_zero: bool = False) -> None:
    """UserError unless `value` > 0 (or >= 0 with allow_zero)."""
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"method option {option}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def options_from_dict(options_cls: type, values: Mapping[str, Any] | None, method: str = "") -> Any:
    """Build a method's options dataclass from a dict, with close-match errors for unknown keys.

    Values pass the one coercer of every option (mtl/config/coerce.py `coerce_value`): command-line
    strings are parsed, an int is a valid float, a bool is never a number.
    """
    if values is None:
        return options_cls()
    if dataclasses.is_dataclass(values) and not isinstance(values, type):
        return values
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise UserError(unknown_name_message(f"option of method {method or options_cls.__name__}",
                                                 key, fields))
        kwargs[key] = coerce_value(f"method.{key}", hints[key], value, f"method {method or options_cls.__name__}")
    return options_cls(**kwargs)
