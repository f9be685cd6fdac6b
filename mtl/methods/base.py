"""The one interface every multi-task optimization method implements, and the method registry.

How a training loop uses a method (all jobs: plain, partitioned or graph-composed models)::

    method = build_method("pcgrad", num_tasks=3, options={"seed": 1})   # typed options, UserError on typos
    method.to(device)                        # optional: backward() moves the method to the losses' device
    for step in ...:
        optimizer.zero_grad(set_to_none=True)
        losses = [criterion(model_out[k], y[k]) for k in range(3)]    # per-task scalar losses
        parts = SharedParts(params=shared, task_params=heads, source="shared",
                            last_shared=last_layer, representation=[z])
        info = method.backward(losses, parts)   # writes .grad on shared and task-specific params
        optimizer.step()
        if method.needs_losses_after_step:      # FAMO: losses of the same batch after the step
            method.after_step(recompute_losses())
        log(info.as_log(task_names))            # task weights used, source, head weighting, diagnostics
    method.end_round()                          # once per training round (epoch); DWA uses it

Contract:

* ``backward`` *accumulates* into ``.grad`` (like ``Tensor.backward``): zero the grads before it. It
  frees the step's graph; backward any extra (non-task) loss before it with ``retain_graph=True``.
* The gradient source (``SharedParts.source``, overridable per method by its ``source`` option) says
  where per-task gradients are taken: ``shared`` (all shared parameters), ``last_shared`` (the last
  shared layer; the weights found there are applied to all shared parameters through the weighted
  loss) or ``representation`` (the shared feature tensor(s); MGDA-UB style). Per-task gradients are
  taken one task at a time into one K x d buffer; methods only look at its K x K Gramian where they
  can. With ``separate_inputs=True`` (each task its own batch, e.g. the decathlon) and the ``shared``
  source, each task's graph is freed as soon as its gradient is taken.
* Task-specific parameters (heads) get each task's own gradient, scaled by the task weight when the
  method's ``heads`` option (or its fixed convention) is ``weighted``; ``StepInfo.heads`` logs which.
* Methods with parameters of their own (uncertainty log-variances, GradNorm weights, FAMO logits,
  RotoGrad rotations) own their optimizer (options ``optimizer``/``lr``) and step it inside
  ``backward`` (``after_step`` for FAMO); never add ``method.parameters()`` to the model optimizer.
* ``state_dict()`` / ``load_state_dict()`` hold everything needed for an exact resume (parameters,
  the method's optimizer state, counters, loss history, random-generator state as a uint8 tensor);
  it loads with ``torch.load(weights_only=True)``. Load it before the first ``backward``.
* ``naive`` is the exception: ``uses_task_optimizers`` is True, and the train job steps one task
  at a time with that task's own optimizer (``NaiveSteps``, mtl/train/method_step.py), never ``backward``.
* A model that supports representation-transforming methods (RotoGrad) feeds head k with
  ``method.adapt_representation(z, k)`` instead of ``z`` (identity for every other method).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.errors import UserError
from mtl.methods.method_options import check_choice, check_positive, options_from_dict  # noqa: F401 (re-exported)
from mtl.registry import Registry

# The module that registers each method (imported on first use; `import mtl.methods` imports them all).
METHODS = Registry("mtl_method", modules={
    "naive": "mtl.methods.naive", "sum": "mtl.methods.sum", "mean": "mtl.methods.mean",
    "uncertainty": "mtl.methods.uncertainty", "dwa": "mtl.methods.dwa", "rlw": "mtl.methods.rlw",
    "famo": "mtl.methods.famo", "gradnorm": "mtl.methods.gradnorm", "mgda": "mtl.methods.mgda",
    "mgda_ub": "mtl.methods.mgda", "pcgrad": "mtl.methods.pcgrad", "cagrad": "mtl.methods.cagrad",
    "imtl_g": "mtl.methods.imtl_g", "nash_mtl": "mtl.methods.nash_mtl", "upgrad": "mtl.methods.upgrad",
    "graddrop": "mtl.methods.graddrop", "aligned_mtl": "mtl.methods.aligned_mtl",
    "rotograd": "mtl.methods.rotograd", "rotate_only": "mtl.methods.rotograd",
    "rotograd_norm": "mtl.methods.rotograd",
})

SOURCES = ("shared", "last_shared", "representation")
HEADS = ("unweighted", "weighted")


@dataclass
class NoOptions:
    """A method without options."""


@dataclass
class GradientOptions:
    """Options shared by the methods that look at per-task gradients."""

    source: str = field(default="", metadata={
        "help": "gradient source: '' = the model's declared one, or shared | last_shared | representation"})
    heads: str = field(default="unweighted", metadata={
        "help": "task-specific params get their own gradient 'unweighted' or scaled by the task weight ('weighted')"})

    def __post_init__(self) -> None:
        check_choice("source", self.source, ("",) + SOURCES)
        check_choice("heads", self.heads, HEADS)


@dataclass
class SharedParts:
    """What a multi-task model shares, as a method needs it for one step.

    Attributes:
        params: trainable shared parameters; they receive the combined update.
        task_params: trainable task-specific parameters (heads, per-task BN, 'auto' loss weights).
        source: the model's declared gradient source (see module docstring).
        last_shared: parameters of the last shared layer (needed for source 'last_shared').
        representation: this step's shared feature tensor(s) (needed for source 'representation'):
            one tensor all tasks read, or one per task when tasks have separate inputs.
        separate_inputs: each task's loss comes from its own batch, so task graphs share only parameters.
        reducer: under data-parallel training, the process group (mtl/train/distributed.py ``Dist``:
            ``average_``, ``sum_``, ``world_size``); per-task gradients are then those of the global
            batch. None = one process.
        loss_scale: fp16's GradScaler scale S (None = no scaler): the losses' gradients are S times the true ones;
            ``task_gradients`` unscales the per-task gradients before a method combines them (a
            non-finite one raises ``NonFiniteGradients`` on every rank), and what a method writes into
            the model's ``.grad`` is S times the update (the step unscales it, as GradScaler does).
    """

    params: Sequence[Tensor]
    task_params: Sequence[Tensor] = ()
    source: str = "shared"
    last_shared: Sequence[Tensor] = ()
    representation: Sequence[Tensor] = ()
    separate_inputs: bool = False
    reducer: Any = None
    loss_scale: float | None = None

    @property
    def grad_scale(self) -> float:
        """S, or 1 without a scaler."""
        return 1.0 if self.loss_scale is None else float(self.loss_scale)

    def __post_init__(self) -> None:
        # frozen parameters take no part (e.g. the original's 'last_third_only' training)
        self.params = [p for p in self.params if p.requires_grad]
        self.task_params = [p for p in self.task_params if p.requires_grad]
        self.last_shared = [p for p in self.last_shared if p.requires_grad]
        check_choice("source", self.source, SOURCES)
        for z in self.representation:
            if not z.requires_grad:
                raise ValueError("SharedParts.representation tensors must be part of the graph (requires_grad)")

    def tensors(self, source: str) -> list[Tensor]:
        """The tensors per-task gradients are taken with respect to, for `source`."""
        check_choice("source", source, SOURCES)
        found = {"shared": self.params, "last_shared": self.last_shared,
                 "representation": self.representation}[source]
        if not found:
            raise UserError(f"gradient source {source!r} needs SharedParts.{_FIELD[source]}, "
                            "which the model did not provide")
        return list(found)


_FIELD = {"shared": "params", "last_shared": "last_shared", "representation": "representation"}


@dataclass
class StepInfo:
    """What a method did in one step (logged by the loop).

    Attributes:
        weights: effective weight of each task's gradient in the shared update (for methods that
            are not a weighted sum, e.g. GradDrop, the weights the losses carried: 1).
        source: the gradient source used.
        heads: how task-specific parameters were updated: 'weighted' or 'unweighted'.
        extras: method diagnostics (e.g. min pairwise cosine of task gradients, solver residual).
    """

    weights: list[float]
    source: str
    heads: str
    extras: dict[str, float] = field(default_factory=dict)

    def as_log(self, task_names: Sequence[str] | None = None, prefix: str = "mtl/") -> dict[str, float]:
        """Flat scalars for TensorBoard/text logs: weight per task plus the extras."""
        names = list(task_names) if task_names is not None else [str(k) for k in range(len(self.weights))]
        out = {f"{prefix}weight/{n}": w for n, w in zip(names, self.weights)}
        out.update({f"{prefix}{k}": v for k, v in self.extras.items()})
        return out


class Method(nn.Module):
    """Base class of all MTL methods: see the module docstring for the contract.

    Subclasses set ``Options`` (their typed options dataclass) and implement ``_backward``; stateful
    ones extend ``_extra_state`` / ``_load_extra_state`` with plain values (tensors, numbers,
    strings, lists, dicts) and register tensors as parameters or buffers.
    """

    Options: ClassVar[type] = NoOptions
    sources: ClassVar[tuple[str, ...]] = SOURCES
    uses_task_optimizers: ClassVar[bool] = False
    needs_losses_after_step: ClassVar[bool] = False
    # Sources for which data-parallel training (SharedParts.reducer) gives one process's update on the
    # global batch: the method sees only global loss values, per-task gradients or their Gramian.
    data_parallel_sources: ClassVar[tuple[str, ...]] = SOURCES

    def __init__(self, num_tasks: int, options: Any = None):
        super().__init__()
        if num_tasks < 1:
            raise UserError(f"a multi-task method needs at least one task (got {num_tasks})")
        self.num_tasks = num_tasks
        self.options = options if options is not None else self.Options()
        self.step_count = 0
        self._optimizer: torch.optim.Optimizer | None = None

    # ---- the interface -------------------------------------------------------------------------
    def backward(self, losses: Sequence[Tensor], parts: SharedParts) -> StepInfo:
        """Write this step's update into ``.grad`` of shared and task-specific params.

        Args:
            losses: one scalar loss per task (task order fixed for the run).
            parts: the model's shared parameters, task parameters and gradient sources.

        Returns:
            The task weights and diagnostics of this step.
        """
        losses = self._check_losses(losses)
        self._follow_device(losses[0].device)
        source = self.source_for(parts)
        info = self._backward(losses, parts, source)
        self.step_count += 1
        return info

    def after_step(self, losses_after: Sequence[Tensor] | None = None) -> None:
        """Called after the model optimizer stepped (only FAMO uses it)."""

    def end_round(self) -> None:
        """Called at the end of each training round (epoch); DWA rolls its loss history here."""

    def adapt_representation(self, z: Tensor, task: int) -> Tensor:
        """The features head `task` reads instead of the shared `z` (identity except RotoGrad)."""
        return z

    def source_for(self, parts: SharedParts) -> str:
        """The gradient source this method uses with `parts` (its option, else the model's)."""
        source = getattr(self.options, "source", "") or parts.source
        if len(self.sources) == 1 and not getattr(self.options, "source", ""):
            source = self.sources[0]  # e.g. RotoGrad: the representation, whatever the model prefers
        if source not in self.sources:
            name = type(self).__name__
            raise UserError(f"method {name} does not support gradient source {source!r} "
                            f"(supported: {', '.join(self.sources)})")
        return source

    def describe(self) -> dict[str, Any]:
        """Name and options, for config.json and logs."""
        return {"method": type(self).__name__, "options": dataclasses.asdict(self.options)}

    # ---- for subclasses ------------------------------------------------------------------------
    def _backward(self, losses: list[Tensor], parts: SharedParts, source: str) -> StepInfo:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def _check_losses(self, losses: Sequence[Tensor]) -> list[Tensor]:
        losses = list(losses)
        if len(losses) != self.num_tasks:
            raise ValueError(f"{type(self).__name__} was built for {self.num_tasks} tasks but got "
                             f"{len(losses)} losses")
        for k, loss in enumerate(losses):
            if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
                raise ValueError(f"loss of task {k} must be a scalar tensor that requires grad")
        return [loss.reshape(()) for loss in losses]

    def _step_own_optimizer(self) -> None:
        """Step the method's own optimizer on the gradients its parameters received, then clear them."""
        if self._optimizer is not None:
            self._optimizer.step()
            self._optimizer.zero_grad(set_to_none=True)

    def _follow_device(self, device: torch.device) -> None:
        tensors = list(self.parameters()) + list(self.buffers())
        if any(t.device != device for t in tensors):
            self.to(device)
            if self._optimizer is not None:  # re-cast optimizer state onto the parameters' device
                self._optimizer.load_state_dict(self._optimizer.state_dict())

    # ---- state (nn.Module stores tensors; this adds counters, histories, optimizer, RNG) -------
    def get_extra_state(self) -> dict[str, Any]:
        state = {"step_count": self.step_count, **self._extra_state()}
        if self._optimizer is not None:
            state["optimizer"] = self._optimizer.state_dict()
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        if self._optimizer is not None and "optimizer" in state:
            self._optimizer.load_state_dict(state["optimizer"])
        self._load_extra_state(state)


def make_optimizer(params: Sequence[Tensor], name: str, lr: float, weight_decay: float = 0.0):
    """The optimizer a method uses for its own parameters ('adam' or 'sgd')."""
    check_choice("optimizer", name, ("adam", "sgd"))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


def generator_state(generator: torch.Generator) -> Tensor:
    """A generator's state as a uint8 tensor (weights_only-safe)."""
    return generator.get_state().clone()


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator: draws are identical on every device and cheap to checkpoint."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


# ---- registry --------------------------------------------------------------------------------
def build_method(name: str, num_tasks: int, options: Mapping[str, Any] | Any | None = None) -> Method:
    """The registered method `name` for `num_tasks` tasks with `options` (dict or options dataclass)."""
    try:
        cls = METHODS.get(name)
    except KeyError as err:
        raise UserError(err.args[0]) from None
    return cls(num_tasks, options_from_dict(cls.Options, options, name))
