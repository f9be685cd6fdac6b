"""Graph-composed multi-task models (torchMTL-style): named nodes, anchors, losses, learned weights, plot.

A model is a list of nodes; each applies its module to the outputs of its anchor node(s) (the model
input when it has none). Nodes with a loss are the tasks. Example::

    model = GraphModel([
        Node("embed", nn.Sequential(nn.Linear(16, 32), nn.ReLU())),
        Node("cls", nn.Linear(32, 10), anchor="embed", loss=nn.CrossEntropyLoss()),
        Node("reg", nn.Linear(32, 1), anchor="embed", loss=nn.MSELoss(), loss_weight="auto"),
    ], example_input=torch.zeros(2, 16))
    outputs = model(x)                                  # {"cls": ..., "reg": ...}
    losses = model.losses(outputs, {"cls": y1, "reg": y2})
    info = method.backward(losses, model.shared_parts())
    model.plot("graph.png")

torchMTL's dict keys (``layers``, ``anchor_layer``, ``loss_weight``, ``loss_init_val``) are accepted.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.errors import UserError
from mtl.methods.base import SharedParts
from mtl.methods.uncertainty import uncertainty_loss
from mtl.models.contract import Adapter, update_guard

INPUT = "input"


@dataclass
class Node:
    """One node of the graph.

    Attributes:
        name: unique name (not 'input', no '.').
        module: nn.Module or callable applied to the anchors' outputs (in anchor order).
        anchor: name or list of names of the nodes it reads; None = the model input.
        loss: loss function (prediction, target) -> scalar; makes the node a task.
        loss_weight: a number, 'auto' (learned uncertainty weighting, see ``GraphModel.task_loss``) or
            None (1).
        loss_init: initial log-variance s of an 'auto' weight.
    """

    name: str
    module: Any
    anchor: str | Sequence[str] | None = None
    loss: Callable[[Tensor, Tensor], Tensor] | None = None
    loss_weight: float | str | None = None
    loss_init: float = 0.0

    @property
    def anchors(self) -> list[str]:
        if self.anchor is None:
            return [INPUT]
        return [self.anchor] if isinstance(self.anchor, str) else list(self.anchor)


_TORCHMTL_KEYS = {"layers": "module", "anchor_layer": "anchor", "loss_init_val": "loss_init"}


def as_node(spec: Node | Mapping[str, Any]) -> Node:
    """A Node from a Node or a dict (our field names or torchMTL's keys)."""
    if isinstance(spec, Node):
        return spec
    fields = {_TORCHMTL_KEYS.get(k, k): v for k, v in spec.items()}
    unknown = set(fields) - set(Node.__dataclass_fields__)
    if unknown:
        raise UserError(f"graph node {spec.get('name', '?')!r}: unknown key(s) {', '.join(sorted(unknown))}")
    if "name" not in fields or "module" not in fields:
        raise UserError(f"graph node {spec!r} needs 'name' and 'module' (or 'layers')")
    return Node(**fields)


class Concat(nn.Module):
    """Concatenate the outputs of several anchors along `dim`."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.cat(inputs, self.dim)


class Select(nn.Module):
    """Pick ``x[index]`` of the input (an element of a tuple/list input, or an index/slice of a tensor)."""

    def __init__(self, index: int | slice):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[self.index]


class GraphModel(nn.Module):
    """A multi-task model composed from nodes; tasks are the nodes with a loss (or ``outputs``).

    A node is *shared* when two or more tasks depend on it, else task-specific. The shared nodes
    whose output feeds a task-specific node form the representation (``shared_parts``); methods
    that transform it per task (RotoGrad) are applied on those edges: ``forward(x, adapter=...)``.
    Implements the MultiTaskModel contract (mtl/models/contract.py).

    Args:
        nodes: Node objects or dicts, in any order.
        outputs: task node names (default: the nodes with a loss, in order).
        example_input: if given, one dry forward pass checks shapes (errors name the node).
        grad_source: the gradient source this model declares ('shared', 'last_shared', 'representation').
    """

    def __init__(self, nodes: Sequence[Node | Mapping[str, Any]], outputs: Sequence[str] | None = None,
                 example_input: Any = None, grad_source: str = "shared"):
        super().__init__()
        self.nodes = {n.name: n for n in _checked_nodes([as_node(s) for s in nodes])}
        self.order = _topological_order(self.nodes)
        self.tasks = list(outputs) if outputs is not None else [n for n in self.nodes if self.nodes[n].loss]
        for task in self.tasks:
            if task not in self.nodes:
                raise UserError(unknown_node("output", task, self.nodes))
        self.blocks = nn.ModuleDict({n: s.module for n, s in self.nodes.items() if isinstance(s.module, nn.Module)})
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.tensor(float(self.nodes[t].loss_init)))
                                          for t in self.tasks if self.nodes[t].loss_weight == "auto"})
        self.task_sets = _task_sets(self.nodes, self.order, self.tasks)
        self.grad_source = grad_source
        self._representation: list[Tensor] = []
        if example_input is not None:
            self.check(example_input)

    # ---- structure -----------------------------------------------------------------------------
    def is_shared(self, name: str) -> bool:
        return len(self.task_sets[name]) >= 2

    def boundary(self) -> list[str]:
        """Shared nodes whose output feeds a task-specific node (the shared representation)."""
        return [n for n in self.order if self.is_shared(n)
                and any(n in self.nodes[c].anchors and not self.is_shared(c) for c in self.nodes)]

    def _params(self, names: Sequence[str]) -> list[nn.Parameter]:
        seen, params = set(), []
        for name in names:
            module = self.nodes[name].module
            for p in module.parameters() if isinstance(module, nn.Module) else ():
                if id(p) not in seen and p.requires_grad:
                    seen.add(id(p))
                    params.append(p)
        return params

    def shared_parameters(self) -> list[nn.Parameter]:
        return self._params([n for n in self.order if self.is_shared(n)])

    def task_parameters(self, task: str | None = None) -> list[nn.Parameter]:
        """Task-specific parameters (of one task, or of all) including 'auto' log-variances."""
        shared = {id(p) for p in self.shared_parameters()}
        names = [n for n in self.order if not self.is_shared(n) and (task is None or task in self.task_sets[n])]
        params = [p for p in self._params(names) if id(p) not in shared]
        tasks = self.tasks if task is None else [task]
        return params + [self.log_vars[t] for t in tasks if t in self.log_vars]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of the last parametrised layer in each representation node."""
        params = []
        for name in self.boundary():
            module = self.nodes[name].module
            layers = [m for m in module.modules() if any(True for _ in m.parameters(recurse=False))] \
                if isinstance(module, nn.Module) else []
            params += list(layers[-1].parameters(recurse=False)) if layers else []
        return params

    @property
    def representation(self) -> list[Tensor]:
        """The shared representation tensor(s) recorded by the last forward pass."""
        return list(self._representation)

    def shared_parts(self, source: str | None = None) -> SharedParts:
        """What a method needs for this step (call after the forward pass)."""
        return SharedParts(self.shared_parameters(), self.task_parameters(), source or self.grad_source,
                           self.last_shared_parameters(), list(self._representation))

    @property
    def task_names(self) -> list[str]:
        """The tasks in order (the name the training jobs use for every model)."""
        return list(self.tasks)

    def parameters_for(self, task: str) -> list[nn.Parameter]:
        """What a task's own optimizer steps (method 'naive'): shared + that task's parameters."""
        return self.shared_parameters() + self.task_parameters(task)

    @property
    def zero_grads_to_none(self) -> bool:
        """A graph model's task optimizers drop gradients."""
        return True

    def update_masks(self, task: str) -> list[tuple[nn.Parameter, Tensor]]:
        """Every task may update every weight of the nodes it uses."""
        return []

    def guard_update(self, *tasks: str) -> ContextManager[None]:
        """Around an optimizer step: restore the entries none of `tasks` may update (`update_guard`)."""
        return update_guard(self, tasks)

    # ---- computation ---------------------------------------------------------------------------
    def forward(self, x: Any, task: str | None = None, *, adapter: Adapter | None = None) -> dict[str, Tensor] | Tensor:
        """Every task's output {task: tensor}; with `task`, only the nodes it depends on, and its output.

        The per-task form serves data where each task has its own batch (the decathlon): the
        representation recorded for ``shared_parts`` is then the shared nodes feeding this task's
        own nodes. `adapter(z, task index)` transforms each representation tensor on its edges into
        a task's own nodes (RotoGrad).
        """
        if task is not None and task not in self.tasks:
            raise KeyError(f"unknown task {task!r} (model tasks: {', '.join(self.tasks)})")
        names = self.order if task is None else [n for n in self.order if task in self.task_sets[n]]
        values = {INPUT: x}
        adapted: dict[tuple[str, int], Tensor] = {}
        for name in names:
            node = self.nodes[name]
            inputs = [self._edge_value(values, adapted, a, name, adapter) for a in node.anchors]
            values[name] = node.module(*inputs)
        if task is None:
            self._representation = [values[n] for n in self.boundary()]
            return {t: values[t] for t in self.tasks}
        self._representation = [values[n] for n in self.boundary()
                                if any(n in self.nodes[c].anchors and not self.is_shared(c) for c in names)]
        return values[task]

    def forward_with_representation(self, x: Any, task: str,
                                    adapter: Adapter | None = None) -> tuple[Tensor, list[Tensor]]:
        """`task`'s output and the representation recorded on the way (before the adapter)."""
        output = self.forward(x, task, adapter=adapter)
        return output, self.representation

    def _edge_value(self, values, adapted, anchor: str, reader: str, adapter: Adapter | None):
        if adapter is None or anchor == INPUT or not self.is_shared(anchor) or self.is_shared(reader):
            return values[anchor]
        task = self.tasks.index(next(iter(self.task_sets[reader])))
        if (anchor, task) not in adapted:
            adapted[anchor, task] = adapter(values[anchor], task)
        return adapted[anchor, task]

    def losses(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any], weighted: bool = True) -> list[Tensor]:
        """Per-task losses in task order, with the declared weights applied (unless ``weighted=False``).

        (`task_loss`).
        """
        losses = []
        for task in self.tasks:
            node = self.nodes[task]
            if node.loss is None:
                raise UserError(f"graph node {task!r} is an output but has no loss")
            loss = node.loss(outputs[task], targets[task])
            losses.append(self.task_loss(task, loss) if weighted else loss)
        return losses

    def task_loss(self, task: str, loss: Tensor) -> Tensor:
        """`loss` with the task's declared weight: a number, or 'auto' = uncertainty weighting (Kendall
        et al. 2018, regression form: 1/2 e^{-s} L + 1/2 s with s a learned task parameter, so it
        cannot run to minus infinity)."""
        node = self.nodes[task]
        if node.loss_weight == "auto":
            return uncertainty_loss(loss, self.log_vars[task])
        return loss if node.loss_weight is None else float(node.loss_weight) * loss

    def check(self, example_input: Any) -> None:
        """One dry forward pass without gradients; a failing node raises UserError naming it."""
        values = {INPUT: example_input}
        was_training = self.training
        self.eval()  # no BatchNorm statistics updates, batch size 1 allowed
        try:
            with torch.no_grad():
                for name in self.order:
                    node = self.nodes[name]
                    inputs = [values[a] for a in node.anchors]
                    try:
                        values[name] = node.module(*inputs)
                    except Exception as err:  # any module error becomes a message naming the node
                        shapes = ", ".join(f"{a!r} {_shape(v)}" for a, v in zip(node.anchors, inputs))
                        raise UserError(f"graph node {name!r} fails on its inputs ({shapes}): {err}") from err
        finally:
            self.train(was_training)

    def plot(self, path: str) -> str:
        """Write the graph as a PNG to `path` (see ``plot_graph``)."""
        return plot_graph(self, path)


# ---- validation ---------------------------------------------------------------------------------
def unknown_node(role: str, name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {role} node {name!r}{hint} (nodes: {', '.join(names)})"


def _checked_nodes(nodes: list[Node]) -> list[Node]:
    names = [n.name for n in nodes]
    for node in nodes:
        if not isinstance(node.name, str) or not node.name or "." in node.name or node.name == INPUT:
            raise UserError(f"graph node name {node.name!r} is invalid (non-empty, no '.', not {INPUT!r})")
        if names.count(node.name) > 1:
            raise UserError(f"graph node {node.name!r} is defined twice")
        if not callable(node.module):
            raise UserError(f"graph node {node.name!r}: module is not callable")
        weight = node.loss_weight
        if weight is not None and weight != "auto" and not isinstance(weight, (int, float)):
            raise UserError(f"graph node {node.name!r}: loss_weight must be a number, 'auto' or None")
        for anchor in node.anchors:
            if anchor != INPUT and anchor not in names:
                raise UserError(f"graph node {node.name!r}: " + unknown_node("anchor", anchor, names))
    return nodes


def _topological_order(nodes: dict[str, Node]) -> list[str]:
    """Kahn's algorithm in declaration order; a cycle raises UserError naming its nodes."""
    pending = {n: {a for a in s.anchors if a != INPUT} for n, s in nodes.items()}
    order = []
    while pending:
        ready = [n for n, deps in pending.items() if not deps]
        if not ready:
            raise UserError("graph has a cycle: " + " -> ".join(_find_cycle(pending)))
        for n in ready:
            order.append(n)
            del pending[n]
        for deps in pending.values():
            deps.difference_update(ready)
    return order


def _find_cycle(pending: dict[str, set[str]]) -> list[str]:
    path, node = [], next(iter(pending))
    while node not in path:
        path.append(node)
        node = sorted(pending[node])[0]
    return path[path.index(node):] + [node]


def _task_sets(nodes: dict[str, Node], order: list[str], tasks: list[str]) -> dict[str, set[str]]:
    """For each node, the tasks whose output depends on it; a node feeding no task is an error."""
    sets = {n: ({n} if n in tasks else set()) for n in order}
    for name in reversed(order):
        for anchor in nodes[name].anchors:
            if anchor != INPUT:
                sets[anchor] |= sets[name]
    for name in order:
        if not sets[name]:
            raise UserError(f"graph node {name!r} feeds no output task (outputs: {', '.join(tasks)})")
    return sets


def _shape(value: Any) -> str:
    if isinstance(value, Tensor):
        return str(tuple(value.shape))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shape(v) for v in value) + "]"
    return type(value).__name__


# ---- plot ---------------------------------------------------------------------------------------
_COLORS = {"input": "#d9d9d9", "shared": "#9ecae1", "task": "#fdd0a2"}


def plot_graph(model: GraphModel, path: str) -> str:
    """Draw the model as a layered graph (input left, tasks right) into a PNG; returns `path`.

    Colours: grey input, blue shared nodes, orange task-specific nodes; tasks are framed in bold and
    labelled with their loss weight.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    depth = {INPUT: 0}
    for name in model.order:
        depth[name] = 1 + max(depth[a] for a in model.nodes[name].anchors)
    layers: dict[int, list[str]] = {}
    for name, d in depth.items():
        layers.setdefault(d, []).append(name)
    pos = {n: (d, -(i - (len(ns) - 1) / 2)) for d, ns in layers.items() for i, n in enumerate(ns)}
    width, height = 2.2 * (max(layers) + 1), 1.2 * max(len(ns) for ns in layers.values()) + 1
    fig = Figure(figsize=(max(width, 4), max(height, 3)))
    ax = fig.subplots()
    boxes = {}
    for name, (x, y) in pos.items():
        kind = "input" if name == INPUT else ("shared" if model.is_shared(name) else "task")
        label = name
        if name in model.tasks:
            weight = model.nodes[name].loss_weight
            label += f"\nweight {'1' if weight is None else weight}"
        boxes[name] = ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=2,
                              bbox={"boxstyle": "round", "facecolor": _COLORS[kind],
                                    "linewidth": 2.0 if name in model.tasks else 0.8})
    for name, node in model.nodes.items():
        for anchor in node.anchors:
            ax.annotate("", xy=pos[name], xytext=pos[anchor], zorder=1,
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "shrinkA": 2, "shrinkB": 2,
                                    "patchA": boxes[anchor].get_bbox_patch(),
                                    "patchB": boxes[name].get_bbox_patch()})
    ax.set_title("blue: shared   orange: task-specific   bold: task output", fontsize=9)
    ax.set_xlim(-0.7, max(layers) + 0.7)
    ax.set_ylim(min(y for _, y in pos.values()) - 0.8, max(y for _, y in pos.values()) + 0.8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
