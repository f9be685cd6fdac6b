"""Named registries for plug-ins (jobs, models, MTL methods, meta-optimizers, worker backends)."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from typing import Any, Callable, Mapping


class Registry:
    """A name -> object table for one kind of plug-in, with listing and helpful lookup errors.

    Usage::

        METHODS = Registry("method", modules={"pcgrad": "mtl.methods.pcgrad"})

        @METHODS.register("pcgrad")          # in mtl/methods/pcgrad.py
        class PCGrad: ...

        METHODS.get("pcgrad")                # imports mtl.methods.pcgrad when needed

    `modules` names, for each plug-in, the module that registers it: `get` imports it on first use,
    so the registry's own module never imports its plug-ins (no import cycle) and a plug-in is listed
    before it is loaded. tests/test_structure.py checks that each named module registers its names.
    """

    def __init__(self, kind: str, modules: Mapping[str, str] | None = None):
        self.kind = kind
        self.modules: dict[str, str] = dict(modules or {})
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
        """The object registered as `name`, importing its module first when needed.

        Raises:
            KeyError: an unknown name (the message lists the choices, closest first).
            ImportError: the module of `name` cannot be imported (e.g. an optional package is missing).
            RuntimeError: the module named for `name` does not register it (a bug).
        """
        if name not in self._entries and name in self.modules:
            importlib.import_module(self.modules[name])
            if name not in self._entries:
                raise RuntimeError(f"{self.modules[name]} does not register {self.kind} {name!r}")
        if name in self._entries:
            return self._entries[name]
        raise KeyError(unknown_name_message(self.kind, name, self.available()))

    def available(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch pattern: those registered and those whose module is named."""
        return sorted(n for n in set(self._entries) | set(self.modules) if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        """Whether `name` is known (registered, or its module is named)."""
        return name in self._entries or name in self.modules


def unknown_name_message(kind: str, name: str, choices) -> str:
    """'unknown <kind> X; did you mean Y? (choices: ...)' for user-facing errors."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (choices: {', '.join(choices) or 'none'})"
