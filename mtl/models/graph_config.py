"""Graph-composed models from JSON-like config: module specs, node lists, and the --plot_model command.

A train config declares ``model="graph"`` and ``graph_model`` as a list of node dicts::

    graph_model=[
        {"name": "body", "module": [{"type": "conv", "in_channels": 3, "out_channels": 16, "stride": 2},
                                    {"type": "conv", "in_channels": 16, "out_channels": 32, "stride": 2}]},
        {"name": "pool", "module": {"type": "pool"}, "anchor": "body"},
        {"name": "digits", "module": {"type": "linear", "in_features": 32, "out_features": "num_classes"},
         "anchor": "pool", "loss_weight": 1.0},
        {"name": "shapes", "module": {"type": "linear", "in_features": 32, "out_features": "num_classes"},
         "anchor": "pool", "loss_weight": "auto"},
    ]

Node keys: ``name``, ``module`` (a spec, or a list of specs run in sequence), ``anchor`` / ``anchors``
(node name(s); none = the images), ``loss`` ('cross_entropy', the default for task nodes),
``loss_weight`` (number or 'auto' = learned uncertainty weighting) and ``loss_init``. The nodes named
after the run's tasks are its outputs. A module spec is ``{"type": T, **kwargs}`` with T a type of
``GRAPH_MODULES`` (conv, linear, pool, flatten, relu, dropout, concat, select, sequential) or a
``torch.nn`` class (``torch.nn.GELU``; nothing else is imported from config data); the string "num_classes" as a value inside a task
node's spec becomes that task's class count. Errors name the node and exit with status 2.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mtl.errors import UserError
from mtl.models.dropout import BatchDropout
from mtl.models.graph import Concat, GraphModel, Node, Select
from mtl.registry import Registry

GRAPH_MODULES = Registry("graph module type")
LOSSES = {"cross_entropy": F.cross_entropy}
NUM_CLASSES = "num_classes"


@GRAPH_MODULES.register("conv")
def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
          batch_norm: bool = True, relu: bool = True) -> nn.Module:
    """Conv2d (padding k // 2) then BatchNorm2d and ReLU (each optional)."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=not batch_norm)]
    layers += [nn.BatchNorm2d(out_channels)] if batch_norm else []
    layers += [nn.ReLU()] if relu else []
    return nn.Sequential(*layers)


@GRAPH_MODULES.register("linear")
def _linear(in_features: int, out_features: int, relu: bool = False) -> nn.Module:
    layer = nn.Linear(in_features, out_features)
    return nn.Sequential(layer, nn.ReLU()) if relu else layer


GRAPH_MODULES.register("pool")(lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
GRAPH_MODULES.register("flatten")(lambda: nn.Flatten())
GRAPH_MODULES.register("relu")(lambda: nn.ReLU())
GRAPH_MODULES.register("dropout")(lambda p=0.5: BatchDropout(p))  # one process's masks under torchrun
GRAPH_MODULES.register("concat")(lambda dim=1: Concat(dim))
GRAPH_MODULES.register("select")(lambda index: Select(index))


@GRAPH_MODULES.register("sequential")
def _sequential(layers: Sequence[Any]) -> nn.Module:
    return nn.Sequential(*[build_module(spec) for spec in layers])


def build_module(spec: Any, num_classes: int | None = None) -> nn.Module:
    """An nn.Module from a spec dict (``{"type": ..., **kwargs}``) or a list of specs (in sequence).

    Raises:
        ValueError / TypeError / KeyError: bad spec (the caller names the node).
    """
    spec = _fill_classes(spec, num_classes)
    if isinstance(spec, (list, tuple)):
        return nn.Sequential(*[build_module(s) for s in spec])
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"a module spec is a dict with a 'type' key or a list of them, not {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    kind = str(spec["type"])
    if "." not in kind:
        return GRAPH_MODULES.get(kind)(**kwargs)
    return torch_nn_class(kind)(**kwargs)


def torch_nn_class(kind: str) -> type:
    """The torch.nn class a dotted type names (``torch.nn.GELU`` or ``nn.GELU``); ValueError for anything
    else. Config data never imports code: only torch.nn's own classes are looked up (an allow-list)."""
    prefix, _, attr = kind.rpartition(".")
    cls = getattr(nn, attr, None) if prefix in ("torch.nn", "nn") and not attr.startswith("_") else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"type {kind!r} is neither a graph module type ({', '.join(GRAPH_MODULES.available())}) "
                         "nor a torch.nn class such as torch.nn.GELU; configs cannot import other code")
    return BatchDropout if cls is nn.Dropout else cls  # one process's masks under torchrun


def _fill_classes(spec: Any, num_classes: int | None) -> Any:
    if isinstance(spec, str) and spec == NUM_CLASSES:
        if num_classes is None:
            raise ValueError("'num_classes' can only be used in the module of a task node")
        return num_classes
    if isinstance(spec, Mapping):
        return {k: _fill_classes(v, num_classes) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_fill_classes(v, num_classes) for v in spec]
    return spec


def build_graph_model(specs: Sequence[Mapping[str, Any]], tasks: Sequence[Any], *, input_res: int,
                      grad_source: str = "shared") -> GraphModel:
    """The GraphModel of a train config for these tasks (DomainSpec-like: name, num_classes).

    One dry forward pass at `input_res` checks shapes, and each task's output must be
    [batch, num_classes]; every error is a UserError naming the node.
    """
    classes = {t.name: int(t.num_classes) for t in tasks}
    nodes = [_node(spec, classes) for spec in specs]
    have = {n.name for n in nodes}
    missing = [t for t in classes if t not in have]
    if missing:
        raise UserError(f"graph_model has no node for task(s) {', '.join(missing)}: name a node after each "
                        f"task of --task_choice (nodes: {', '.join(sorted(have))})")
    for node in nodes:
        if node.loss is not None and node.name not in classes:
            raise UserError(f"graph node {node.name!r} has a loss but is not one of the run's tasks "
                            f"({', '.join(classes)})")
    example = torch.zeros(2, 3, input_res, input_res)
    model = GraphModel(nodes, outputs=list(classes), example_input=example, grad_source=grad_source)
    model.eval()
    with torch.no_grad():
        for task, k in classes.items():
            shape = tuple(model(example, task).shape)
            if shape != (2, k):
                raise UserError(f"graph node {task!r} outputs shape {shape} for a batch of 2; task {task} "
                                f"needs (2, {k}) (use out_features='num_classes')")
    model.train()
    return model


def _node(spec: Mapping[str, Any], classes: Mapping[str, int]) -> Node:
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise UserError(f"graph_model entries are dicts with at least 'name' and 'module', not {spec!r}")
    name = spec["name"]
    fields = dict(spec)
    if "anchors" in fields:
        if "anchor" in fields:
            raise UserError(f"graph node {name!r}: give 'anchor' or 'anchors', not both")
        fields["anchor"] = fields.pop("anchors")
    if "module" not in fields:
        raise UserError(f"graph node {name!r} needs a 'module' spec")
    try:
        fields["module"] = build_module(fields["module"], classes.get(name))
    except UserError as err:
        raise UserError(f"graph node {name!r}: {err}") from None
    except (ValueError, TypeError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise UserError(f"graph node {name!r}: bad module spec: {message}") from None
    loss = fields.get("loss", "cross_entropy" if name in classes else None)
    if loss is not None:
        if loss not in LOSSES:
            raise UserError(f"graph node {name!r}: unknown loss {loss!r} (choices: {', '.join(LOSSES)})")
        fields["loss"] = LOSSES[loss]
    unknown = set(fields) - set(Node.__dataclass_fields__)
    if unknown:
        raise UserError(f"graph node {name!r}: unknown key(s) {', '.join(sorted(unknown))} "
                        "(keys: name, module, anchor(s), loss, loss_weight, loss_init)")
    return Node(**fields)


def plot_model_command(opts: Any, path: str) -> int:
    """`main.py --plot_model [PATH] --config CONFIG`: build the config's graph model and write its PNG."""
    from mtl.data.domains import get_dataset

    if getattr(opts, "model", None) != "graph":
        raise UserError("--plot_model draws graph-composed models: the config must set model='graph' and "
                        "graph_model (see mtl/models/graph_config.py)")
    spec = get_dataset(opts.dataset)
    model = build_graph_model(opts.graph_model, [spec.domain(t) for t in opts.task_names()],
                              input_res=opts.input_res, grad_source=opts.grad_source)
    model.plot(path)
    print(f"wrote {path}")
    return 0
