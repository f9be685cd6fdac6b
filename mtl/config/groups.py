"""Nested option groups: a plug-in's typed options (`--method.alpha`) and a stage's job options (`--retrain.lr`).

A group is a dict-valued option whose field metadata holds a `Group`: its public prefix and where its
schema comes from (the plug-in named by another option, or a job's options class). Its value is
stored as the sparse dict of values that were set (so config.json keeps the shape it always had);
`resolve_groups` checks every key against the schema and coerces it with the one coercer once all
layers are merged. The storage name (`method_options`) is the old public name: it keeps working for
one release, with a one-line notice.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import re
import sys
import typing
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from mtl.config.coerce import check_bounds, coerce_value
from mtl.errors import UserError
from mtl.registry import unknown_name_message

REQUIRED = object()  # default of a plug-in parameter without one


class Param(NamedTuple):
    """One typed entry of a group: its type, default (REQUIRED: none) and help line."""

    type: Any
    default: Any
    help: str


@dataclass(frozen=True)
class Group:
    """Where a group's keys come from.

    prefix: the public name (`--<prefix>.<key>`). plugin: the option naming the plug-in whose options
    these are (`mtl_method`), with `kind` its registry ("method", "optimizer", "objective"). job: the
    job whose options a stage group holds ("train", "search"), `config` the option naming the stage's
    config. named: one level of names (method or budget names) before the keys.
    """

    prefix: str
    kind: str = ""
    plugin: str = ""
    job: str = ""
    config: str = ""
    named: bool = False
    keys: tuple[str, ...] = ()  # job groups: only these options (empty: every one)


def groups(cls: type) -> dict[str, Group]:
    """Storage name -> Group of every group option of `cls`."""
    return {f.name: f.metadata["group"] for f in dataclasses.fields(cls) if f.metadata.get("group")}


# -- public paths -> storage paths ---------------------------------------------------------------


def storage_path(cls: type, key: str, source: str) -> tuple[list[str], str | None]:
    """(storage path, new spelling when `key` uses an old one) of a public dotted key of class `cls`.

    `method.alpha` -> (["method_options", "alpha"], None); `method_options.alpha` -> (same, "method.alpha");
    `search.optimizer.delta_size` -> (["search_options", "optimizer_options", "delta_size"], None).
    """
    head, *rest = key.split(".")
    names = {f.name for f in dataclasses.fields(cls)}
    found = groups(cls)
    prefixes = {g.prefix: n for n, g in found.items()}
    if head in prefixes and (rest or head not in names):
        target = prefixes[head]
    elif head in names:
        target = head
    else:
        raise UserError(f"{source}: {unknown_name_message('option', head, names | set(prefixes))}. "
                        "`--help` with the config lists every option.")
    grp = found.get(target)
    public = grp.prefix if grp else head
    if grp and grp.job and rest and not grp.named:
        inner, inner_new = storage_path(job_options_cls(grp.job), ".".join(rest), source)
        new = f"{public}.{inner_new or '.'.join(rest)}"
        return [target, *inner], new if (inner_new or public != head) else None
    return [target, *rest], ".".join([public, *rest]) if public != head else None


def canonical(cls: type, values: dict[str, Any], source: str, notes: list[str] | None = None) -> dict[str, Any]:
    """`values` (public, dotted or old keys) in storage form: group options as nested dicts.

    Old spellings are appended to `notes` (when given). Strings inside groups stay strings until
    `resolve_groups` coerces them against the schema.
    """
    out: dict[str, Any] = {}
    for key, raw in values.items():
        path, new = storage_path(cls, key, source)
        if new and notes is not None:
            notes.append(deprecation_note(key, new))
        grp = groups(cls).get(path[0])
        if grp is None:
            if len(path) > 1:
                raise UserError(f"{source}: option {path[0]!r} is not a group, so {key!r} cannot set a key of it.")
            out[path[0]] = raw
            continue
        if len(path) == 1:
            out[path[0]] = group_value(cls, path[0], raw, source, notes)
        else:
            out[path[0]] = canonical_set(out.get(path[0]), path[1:], raw)
    return out


def group_value(cls: type, name: str, raw: Any, source: str, notes: list[str] | None = None) -> dict:
    """A whole group's value (a mapping, or its YAML / JSON text) in storage form."""

    value = coerce_value(name, dict, raw, source)
    grp = groups(cls)[name]
    if grp.job and not grp.named:
        return canonical(job_options_cls(grp.job), value, f"{source}: --{grp.prefix}", notes)
    return value


def merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """`layer` over `base` (both in storage form); group dicts merge key by key, recursively."""
    out = dict(base)
    for key, value in layer.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def layered(cls: type, layers: list[dict], source: str) -> dict:
    """The layers (public, dotted or storage keys) in storage form, each over the one before; group
    options (optimizer_options, ...) merge key by key."""
    values: dict = {}
    for layer in layers:
        values = merge(values, canonical(cls, layer, source))
    return values


def canonical_set(current: Any, path: list[str], value: Any) -> dict:
    """A copy of the group dict `current` with `value` set at `path` (nested dicts made as needed)."""
    out = dict(current) if isinstance(current, dict) else {}
    out[path[0]] = value if len(path) == 1 else canonical_set(out.get(path[0]), path[1:], value)
    return out


def deprecation_note(key: str, new: str) -> str:
    """The one-line notice for an old spelling (`method_options.alpha` -> `method.alpha`)."""
    if "." not in new:  # a whole group: one dotted key per entry
        new = f"{new}.<option> VALUE for each entry"
    return (f"note: --{key} is deprecated and goes in the next release: write --{new} "
            "(the same dotted name works in config modules and YAML/JSON files).")


def print_notes(notes: list[str], out=None) -> None:
    """Each deprecation notice once, one line each (stderr)."""
    out = out or sys.stderr
    for line in dict.fromkeys(notes):
        out.write(line + "\n")


# -- schemas ------------------------------------------------------------------------------------


def job_options_cls(job: str) -> type:
    from mtl.jobs import get_job

    return get_job(job).options_cls


def schema(opts: Any, name: str, item: str | None = None) -> dict[str, Param] | None:
    """The typed entries of group `name` of `opts` (None: not known, keys pass unchecked).

    item: for named groups, the name (method / budget) whose entries are asked for.
    """
    grp = groups(type(opts))[name]
    if grp.job:
        cls = job_options_cls(grp.job)
        params = job_params(cls)
        return {k: v for k, v in params.items() if k in grp.keys} if grp.keys else params
    plugin = item if grp.named else getattr(opts, grp.plugin)
    return plugin_params(grp.kind, plugin)


def job_params(cls: type) -> dict[str, Param]:
    """Every option of a job's options class as a Param (groups: type dict)."""
    hints = typing.get_type_hints(cls)
    return {f.name: Param(hints[f.name], _field_default(f), f.metadata.get("help", ""))
            for f in dataclasses.fields(cls)}


_CONTEXT = {"optimizer": ("space", "seed", "tasks"),
            "objective": ("space", "tasks", "dataset", "task_choice", "data_dir", "exp_root", "run_id", "device",
                          "seed")}


def plugin_params(kind: str, name: str) -> dict[str, Param] | None:
    """The options of plug-in `name` of registry `kind`: its registered options class, else its
    dataclass fields or constructor parameters (minus what the job fills in). None: unknown."""
    target = _plugin(kind, name)
    if target is None:
        return None
    options = getattr(target, "Options", None)
    if options is not None:
        return dataclass_params(options)
    if dataclasses.is_dataclass(target):
        params = dataclass_params(target)
    else:
        params = signature_params(target)
    if params is None:
        return None
    return {k: v for k, v in params.items() if k not in _CONTEXT.get(kind, ())}


def options_class(kind: str, name: str) -> type | None:
    """The options dataclass plug-in `name` registers (`Options`), None when it has none."""
    target = _plugin(kind, name)
    return getattr(target, "Options", None) if target is not None else None


def _plugin(kind: str, name: str) -> Any:
    try:
        if kind == "method":
            from mtl.methods import METHODS

            return METHODS.get(name)
        if kind == "optimizer":
            from mtl.meta.optimizers import OPTIMIZERS

            found = OPTIMIZERS.get(name)
            return None if getattr(found, "options_via_fields", False) else found
        if kind == "objective":
            from mtl.meta.objectives import get_objective

            return get_objective(name)
    except (KeyError, ImportError):
        return None  # the name itself is reported by the job's validation
    raise ValueError(f"unknown plug-in kind {kind!r}")


def dataclass_params(cls: type) -> dict[str, Param]:
    hints = typing.get_type_hints(cls)
    docs = {**arg_docs(cls), **getattr(cls, "option_help", {})}
    return {f.name: Param(hints[f.name], _field_default(f), f.metadata.get("help") or docs.get(f.name, ""))
            for f in dataclasses.fields(cls) if f.init}


def signature_params(target: Callable) -> dict[str, Param] | None:
    func = target.__init__ if isinstance(target, type) else target
    try:
        hints = typing.get_type_hints(func)
        params = inspect.signature(func).parameters
    except (NameError, TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    docs = arg_docs(target)
    return {n: Param(hints.get(n, Any), REQUIRED if p.default is p.empty else p.default, docs.get(n, ""))
            for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def arg_docs(obj: Any) -> dict[str, str]:
    """name -> first line of its entry in a Google-style `Args:` section (`a / b: text` names both)."""
    doc = inspect.getdoc(obj) or ""
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    out: dict[str, str] = {}
    for line in section.splitlines():
        match = re.match(r"\s{0,8}([\w ,/.]+?):\s+(.*)", line)
        if not match:
            continue
        for name in re.split(r"[ ,/]+", match.group(1).replace("...", " ")):
            out.setdefault(name, match.group(2).strip())
    return out


def _field_default(fld: dataclasses.Field) -> Any:
    if fld.default is not dataclasses.MISSING:
        return fld.default
    if fld.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return fld.default_factory()  # type: ignore[misc]
    return REQUIRED


# -- resolution ---------------------------------------------------------------------------------


def resolve_groups(opts: Any) -> None:
    """Every group of `opts` checked against its schema and coerced (in place); UserError naming the key."""
    for name, grp in groups(type(opts)).items():
        value = getattr(opts, name)
        if not isinstance(value, dict):
            raise UserError(f"--{grp.prefix} must be a mapping of options (got {value!r}).")
        if grp.named:
            setattr(opts, name, {item: _resolve_one(opts, name, grp, entries, item)
                                 for item, entries in value.items()})
        else:
            setattr(opts, name, _resolve_one(opts, name, grp, value, None))


def _resolve_one(opts: Any, name: str, grp: Group, values: Any, item: str | None) -> dict:

    where = f"--{grp.prefix}" + (f".{item}" if item else "")
    if not isinstance(values, dict):
        raise UserError(f"{where} must be a mapping of options (got {values!r}).")
    params = schema(opts, name, item)
    if params is None:
        return {k: coerce_value(f"{where}.{k}", Any, v, "options") for k, v in values.items()}
    if grp.job:
        return _resolve_stage(opts, grp, values, where)
    out = {}
    for key, raw in values.items():
        if key not in params:
            raise UserError(_unknown_key(where, key, f"{grp.kind} {item or getattr(opts, grp.plugin)}", params))
        out[key] = coerce_value(f"{where}.{key}", params[key].type, raw, "options")
    _check_options_class(grp, item or getattr(opts, grp.plugin), out, where)
    return out


def _unknown_key(where: str, key: str, whose: str, params: dict) -> str:
    close = difflib.get_close_matches(key, list(params), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (f"{where}.{key}: unknown {key} for {whose}{hint} (its options: "
            f"{', '.join(params) or 'none'}; `--help` with it lists them typed).")


def _resolve_stage(opts: Any, grp: Group, values: dict, where: str) -> dict:
    """A stage's job options: applied over its config's to a throwaway options object (typed, checked,
    plug-in groups resolved), nothing built."""
    from mtl.config.loader import load_config

    cls = job_options_cls(grp.job)
    if grp.keys:
        extra = sorted(set(values) - set(grp.keys))
        if extra:
            raise UserError(f"{where}: {unknown_name_message('key', extra[0], grp.keys)}.")
    child = cls()
    config = getattr(opts, grp.config, "") if grp.config else ""
    if config:
        spec = load_config(config)
        apply_values(child, spec.options, f"config {config}")
    for key, value in values.items():  # group entries merge over the config's, as when the stage runs
        if key in groups(cls) and isinstance(value, dict):
            setattr(child, key, merge(getattr(child, key), value))
        else:
            apply_values(child, {key: value}, where)
    resolve_groups(child)
    return {k: getattr(child, k) if k not in groups(cls) else _sparse(getattr(child, k), v)
            for k, v in values.items()}


def _sparse(resolved: dict, given: Any) -> Any:
    """The resolved entries of a nested group, limited to the keys that were given."""
    if not isinstance(given, dict):
        return resolved
    return {k: _sparse(resolved[k], v) if isinstance(v, dict) and isinstance(resolved.get(k), dict)
            else resolved.get(k, v) for k, v in given.items()}


def _check_options_class(grp: Group, plugin: str, values: dict, where: str) -> None:
    """The plug-in's own checks (its options dataclass' __post_init__), without building the plug-in."""
    cls = options_class(grp.kind, plugin)
    if cls is None:
        return
    try:
        cls(**values)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: {err}.") from None


def describe_group(opts: Any, name: str, help_text: str) -> list[tuple[str, str, Any, str]]:
    """(public key, type name, value, help) rows of group `name` for --help: one per typed entry of the
    chosen plug-in, one row (the option's own help) for a stage or a group of named entries."""
    grp = groups(type(opts))[name]
    value = getattr(opts, name)
    if grp.named:
        return [(f"{grp.prefix}.<name>.<option>", "VALUE", value, help_text)]
    if grp.job:
        return [(f"{grp.prefix}.<option>", "VALUE", value, f"{help_text} (any {grp.job} option)")]
    params = schema(opts, name)
    if params is None:
        return [(f"{grp.prefix}.<option>", "VALUE", value, f"options of {grp.kind} {getattr(opts, grp.plugin)}")]
    rows = []
    for key, param in params.items():
        current = value.get(key, param.default)
        rows.append((f"{grp.prefix}.{key}", type_name(param.type), "(required)" if current is REQUIRED else current,
                     param.help))
    return rows


def type_name(typ: Any) -> str:
    """A short name of a type for --help (`float`, `list[int]`, `str | None`); a mapping a plug-in takes
    whole (a runner's variants, a train objective's overrides) is `json`: YAML / JSON text or a mapping."""
    if typ is dict or typing.get_origin(typ) in (dict, collections.abc.Mapping):
        return "json"
    args = typing.get_args(typ)
    if typing.get_origin(typ) is typing.Union or str(typing.get_origin(typ)) == "<class 'types.UnionType'>":
        return " | ".join("none" if a is type(None) else type_name(a) for a in args)
    name = getattr(typ, "__name__", None) if typing.get_origin(typ) is None else None
    return name or str(typ).replace("typing.", "").replace("collections.abc.", "")


def option_fields(cls: type) -> dict[str, dataclasses.Field]:
    """Name -> Field of an options dataclass, in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls)}


def field_types(cls: type) -> dict[str, Any]:
    """Name -> resolved type annotation of an options dataclass."""
    return typing.get_type_hints(cls)


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
