"""Named registries for plug-ins (jobs, models, MTL methods, meta-optimizers, worker backends)."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable


class Registry:
    """A name -> object table for one kind of plug-in, with listing and helpful lookup errors.

    Usage::

        METHODS = Registry("method")

        @METHODS.register("pcgrad")
        class PCGrad: ...

        METHODS.get("pcgrad")
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator recording `obj` under `name`; a name may be registered once."""

        def decorate(obj: Any) -> Any:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> Any:
        """The object registered as `name`; KeyError listing the choices (closest first) otherwise."""
        if name in self._entries:
            return self._entries[name]
        raise KeyError(unknown_name_message(self.kind, name, self._entries))

    def available(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch pattern."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def unknown_name_message(kind: str, name: str, choices) -> str:
    """'unknown <kind> X; did you mean Y? (choices: ...)' for user-facing errors."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (choices: {', '.join(choices) or 'none'})"
