"""How the train job steps: 'naive' (one task per step) or a combined multi-task method (every task).

``NaiveSteps`` (``--mtl_method naive``, the default) is the original's regime, unchanged bit for bit:
the MultiDomainLoader picks one task per step (curriculum), and that task's own SGD steps over the
shared and its own parameters.

``MethodSteps`` (every other method) takes one batch of *every* task per step from ``TaskBatches``
(one single-domain MultiDomainLoader per task, each seeded from (seed, task index), so the curriculum
option does not apply), computes the K losses, lets the method write the combined update into
``.grad`` (``method.backward``) and steps one SGD over the shared and all task parameters. Tasks have
separate inputs (each its own images), so each task's graph can be freed once its gradient is taken.

Models are used only through the MultiTaskModel contract (mtl/models/contract.py). Gradient sources
(``--grad_source``, or the method's own ``source`` option): ``shared`` = every trainable shared
parameter; ``last_shared`` = the model's ``last_shared_parameters`` (ResNet: the last conv of the last
stage); ``representation`` = the shared features of each task's batch, from the model's
``forward_with_representation`` (ResNet: the final feature map before the head; graph: the shared
nodes feeding the task's own nodes). With separate inputs, representation gradients of different tasks live on
different tensors and are orthogonal, so representation-based methods see no conflict between tasks.

Partitioned models: each task's gradient is already zero outside its backward masks, and every
method's update is a combination of per-task gradients (or, for the representation source,
flows through each task's own graph), so an entry's update only ever carries gradients of tasks that
may update it. The optimizer step is wrapped in a guard for the union of the tasks' update masks:
entries no task may update (momentum, weight decay) are restored. What is not held: an entry one
task may update also moves by weight decay and momentum built from other allowed tasks' gradients,
as in any joint update.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mtl.data.batches import MultiDomainLoader
from mtl.methods.base import Method, SharedParts, StepInfo
from mtl.methods.gramian import NonFiniteGradients
from mtl.models.contract import MultiTaskModel
from mtl.train.distributed import SINGLE, Dist, model_buffers, straight_through
from mtl.train.divergence import all_finite, restore_buffers, saved_buffers
from mtl.train.task_step import autocast, grad_scaler, precision, train_step
from mtl.train.optim import make_sgd, set_lr
from mtl.util.rng import derive_seed

_STREAM_PURPOSE = 4  # derive_seed purpose of the per-task streams (the loader uses 1-3)


def make_steps(opts: Any, model: MultiTaskModel, net: nn.Module, method: Method, tasks: list[str], folder: Path,
               device: torch.device, dist: Dist = SINGLE) -> "NaiveSteps | MethodSteps":
    """The stepper for `method`: NaiveSteps when it uses per-task optimizers, else MethodSteps.

    Data-parallel (`dist`, mtl/train/distributed.py): each rank gets its slice of every (global)
    batch, and a step is that of one process on the global batch.
    """
    kind = NaiveSteps if method.uses_task_optimizers else MethodSteps
    return kind(opts, model, net, method, tasks, folder, device, dist)


def _loader_kwargs(opts: Any, device: torch.device, dist: Dist) -> dict[str, Any]:
    return dict(batch_size=opts.batch_size, device=device, train_on_valid=opts.train_on_valid,
                input_res=opts.input_res, prefetch=opts.prefetch, in_memory=opts.in_memory,
                shard=(dist.rank, dist.world_size))


class NaiveSteps:
    """One task per step (sampled by the curriculum), stepped by that task's own SGD."""

    def __init__(self, opts, model, net, method, tasks, folder, device, dist=SINGLE):
        self.net, self.eval_net, self.method, self.amp = net, net, method, precision(opts, device)
        self.dist, self.buffers = dist, model_buffers(model)
        self.scaler = grad_scaler(self.amp, device)  # fp16 only; checkpointed with the optimizers
        self.channels_last = opts.channels_last and device.type == "cuda"
        self.optimizers = {t: make_sgd(model.parameters_for(t), opts.lr, opts.momentum, opts.weight_decay, True)
                           for t in tasks}
        self.loader = MultiDomainLoader(folder, tasks, seed=opts.seed, policy=opts.curriculum,
                                        curriculum=(opts.curriculum_temperature, opts.curriculum_bias),
                                        order=opts.task_order() if opts.curriculum == "fixed" else None,
                                        **_loader_kwargs(opts, device, dist))
        self.clip_grad = opts.clip_grad
        self.set_to_none = model.zero_grads_to_none

    def step(self, lr: float) -> tuple[dict[str, dict[str, float]], StepInfo | None]:
        task, images, labels = next(self.loader)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        set_lr(self.optimizers[task], lr)
        metrics = train_step(self.net, self.optimizers[task], task, images, labels, amp=self.amp,
                             set_to_none=self.set_to_none, clip_grad=self.clip_grad, dist=self.dist,
                             scaler=self.scaler)
        self.dist.broadcast_(self.buffers)  # BatchNorm statistics: rank 0's (DDP's broadcast_buffers)
        return {task: {**metrics, "images": len(labels) * self.dist.world_size}}, None

    def end_round(self) -> None:
        self.method.end_round()

    def after_restore(self) -> None:
        """With zeroed (not dropped) gradients, every parameter a step has touched holds a gradient, so
        other tasks' optimizers decay it; recreate those zeros after a restore (every such parameter has
        momentum state), so a resumed run steps exactly as an uninterrupted one."""
        if self.set_to_none:
            return
        for optimizer in self.optimizers.values():
            for param in optimizer.state:
                if param.grad is None:
                    param.grad = torch.zeros_like(param)

    def describe(self) -> str:
        return "method naive: one task per step (curriculum), its own SGD over shared + its parameters"


class TaskBatches:
    """One batch of every task per call: {task: (images, labels)}, resumable like MultiDomainLoader."""

    def __init__(self, folder: Path, tasks: list[str], seed: int, **loader_kwargs: Any):
        self.loaders = {t: MultiDomainLoader(folder, [t], seed=derive_seed(seed, _STREAM_PURPOSE, k),
                                             policy="uniform", **loader_kwargs)
                        for k, t in enumerate(tasks)}

    def __next__(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {t: next(loader)[1:] for t, loader in self.loaders.items()}

    def update_task_accuracy(self, task: str, accuracy: float) -> None:
        """No curriculum: every task is in every step."""

    def state_dict(self) -> dict:
        return {"tasks": {t: loader.state_dict() for t, loader in self.loaders.items()}}

    def load_state_dict(self, state: dict) -> None:
        for t, loader in self.loaders.items():
            loader.load_state_dict(state["tasks"][t])

    def close(self) -> None:
        for loader in self.loaders.values():
            loader.close()


class MethodNet(nn.Module):
    """The model as the combined step and evaluation call it: ``net(images, task) -> logits``.

    With `split` (representation source, or a method that transforms the representation such as
    RotoGrad) it is the model's ``forward_with_representation`` with the method's adapter, recording
    the representation; otherwise the plain (maybe compiled) forward.
    """

    def __init__(self, model: MultiTaskModel, net: nn.Module, method: Method, tasks: list[str], split: bool):
        super().__init__()
        self.model = model
        object.__setattr__(self, "_net", net)  # the (maybe compiled) model; not a second submodule
        object.__setattr__(self, "_method", method)
        self.tasks, self.split = tasks, split
        self._adapter = method.adapt_representation if _adapts(method) else None
        self._reps: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor, task: str) -> torch.Tensor:
        if not self.split:
            return self._net(images, task)
        logits, representation = self.model.forward_with_representation(images, task, self._adapter)
        if torch.is_grad_enabled():
            self._reps += representation
        return logits

    def take_representation(self) -> list[torch.Tensor]:
        reps, self._reps = self._reps, []
        return reps


def _adapts(method: Method) -> bool:
    return type(method).adapt_representation is not Method.adapt_representation


class MethodSteps:
    """Every task every step; the method combines the K losses' gradients; one SGD over everything."""

    def __init__(self, opts, model, net, method, tasks, folder, device, dist=SINGLE):
        self.model, self.method, self.tasks, self.amp = model, method, tasks, precision(opts, device)
        self.dist, self.buffers = dist, model_buffers(model)
        self.scaler = grad_scaler(self.amp, device)  # fp16 only; checkpointed with the optimizers
        self.channels_last = opts.channels_last and device.type == "cuda"
        self.declared_source = opts.grad_source
        # Loss-weighting methods (no 'source' option) backward the weighted sum: no source to take.
        takes_source = hasattr(method.options, "source") or len(method.sources) == 1
        self.source = method.source_for(SharedParts([], source=opts.grad_source)) if takes_source else None
        self.net = MethodNet(model, net, method, tasks, split=self.source == "representation" or _adapts(method))
        self.eval_net = self.net
        self.optimizers = {"all": make_sgd(model.parameters(), opts.lr, opts.momentum, opts.weight_decay, True)}
        self.loader = TaskBatches(folder, tasks, opts.seed, **_loader_kwargs(opts, device, dist))

    def step(self, lr: float) -> tuple[dict[str, dict[str, float]], StepInfo]:
        batches = next(self.loader)
        if self.channels_last:
            batches = {t: (x.contiguous(memory_format=torch.channels_last), y) for t, (x, y) in batches.items()}
        optimizer = self.optimizers["all"]
        set_lr(optimizer, lr)
        result = multi_task_step(self.net, self.model, self.method, optimizer, batches,
                                 source=self.declared_source, amp=self.amp, dist=self.dist, scaler=self.scaler)
        self.dist.broadcast_(self.buffers)  # BatchNorm statistics: rank 0's (DDP's broadcast_buffers)
        return result

    def end_round(self) -> None:
        self.method.end_round()

    def after_restore(self) -> None:
        """Nothing to recreate: the combined step drops gradients."""

    def describe(self) -> str:
        heads = getattr(self.method.options, "heads", None)
        return (f"method {self.method.describe()}: every task every step, one SGD over shared + task "
                f"parameters | gradient source {self.source or 'none (weighted loss sum)'} (model declares "
                f"{self.declared_source}) | "
                f"heads {heads or 'by the method (logged with the first step)'}")


def multi_task_step(net: MethodNet, model: MultiTaskModel, method: Method, optimizer: torch.optim.Optimizer,
                    batches: dict[str, tuple[torch.Tensor, torch.Tensor]], *, source: str,
                    amp: bool, dist: Dist = SINGLE,
                    scaler: torch.amp.GradScaler | None = None) -> tuple[dict[str, dict[str, float]], StepInfo]:
    """One combined step: every task's loss, the method's update into .grad, one optimizer step.

    Args:
        net: the MethodNet (records the representation when the source needs it).
        model: the underlying model (its shared / task parameters, update masks).
        method: the MTL method (not 'naive').
        optimizer: SGD over the model's trainable parameters.
        batches: task -> (images, labels), in task order.
        source: the gradient source the model declares (the method's option may override it).
        amp: autocast (True: bf16 on CUDA; a dtype: that one on any device).
        dist: data-parallel group: losses, per-task gradients and the update become the global batch's.
        scaler: fp16's GradScaler. The losses keep their values but carry its scale S into their
            gradients (``SharedParts.loss_scale``): the per-task gradients are unscaled before the
            method combines them (fp32), the update written into .grad is unscaled before the step. An
            overflow (in a per-task gradient, or in the update) skips the step on every rank, puts the
            method's state back and halves S, as GradScaler does; it is reported finite (not a divergence).

    Returns:
        Per task {"loss" (unweighted cross-entropy), "accuracy", "images", "finite"}, and the method's
        StepInfo (None for a skipped step: a non-finite loss or gradient, or an fp16 overflow).
    """
    net.train()
    buffers = saved_buffers(model)
    ce, logits_all, reps = [], [], []
    for task, (images, labels) in batches.items():
        with autocast(images.device, amp):
            logits = net(images, task)
        ce.append(F.cross_entropy(logits.float(), labels))
        logits_all.append(logits.detach())
        reps += net.take_representation()
    tasks = list(batches)
    ce, values, correct = _global_losses(dist, ce, logits_all, [batches[t][1] for t in tasks])
    losses = [model.task_loss(task, loss) for task, loss in zip(tasks, ce)]
    optimizer.zero_grad(set_to_none=True)
    finite = all(math.isfinite(v) for v in values)
    info, overflow = None, False
    if finite:  # a non-finite loss never reaches the method (its weights / logits / rotations stay)
        before = copy.deepcopy(method.state_dict())
        scale = None
        if scaler is not None:  # value unchanged, gradient x S (S a power of 2: exact)
            losses = [loss.detach() + (scaled - scaled.detach()) for loss, scaled in
                      ((loss, scaler.scale(loss)) for loss in losses)]
            scale = float(scaler.get_scale())
        parts = SharedParts(model.shared_parameters(), task_parameters(model, tasks), source,
                            model.last_shared_parameters(), reps, separate_inputs=True,
                            reducer=dist if dist.active else None, loss_scale=scale)
        try:
            info = method.backward(losses, parts)
        except NonFiniteGradients:  # fp16: raised on every rank alike, before anything was combined
            finite = False
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        unscaled = finite and scaler is not None
        if finite:
            dist.average_(grads)  # what is still local in the update (a no-op on what the method averaged)
            if unscaled:
                scaler.unscale_(optimizer)  # the same averaged .grad on every rank: the same verdict
            finite = bool(all_finite([], grads)) if grads else True
        if finite:
            with model.guard_update(*tasks):
                optimizer.step()
            if method.needs_losses_after_step:
                method.after_step(losses_after_step(net, model, batches, amp, dist))
        else:  # an overflow in a task's or the combined gradient: undo what the method learnt from it
            method.load_state_dict(before)
            info, overflow = None, scaler is not None
        if scaler is not None:
            _update_scale(scaler, unscaled)
    if not finite:
        optimizer.zero_grad(set_to_none=True)
        restore_buffers(buffers)
    metrics = {t: {"loss": value, "accuracy": hits / (len(batches[t][1]) * dist.world_size),
                   "images": len(batches[t][1]) * dist.world_size, "finite": finite or overflow}
               for t, value, hits in zip(tasks, values, correct)}
    return metrics, info


def _update_scale(scaler: torch.amp.GradScaler, unscaled: bool) -> None:
    """GradScaler.update after `unscale_` (it recorded the inf check). An overflow in a per-task
    gradient stops the step before any: back off and restart the growth count, as GradScaler does on
    an overflow (through its state dict: the same scale and tracker on every rank)."""
    if unscaled:
        scaler.update()
        return
    state = scaler.state_dict()
    state.update(scale=state["scale"] * state["backoff_factor"], _growth_tracker=0)
    scaler.load_state_dict(state)


def _global_losses(dist: Dist, ce: list[torch.Tensor], logits: list[torch.Tensor],
                   labels: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[float], list[int]]:
    """The losses (global values, local gradients), their values and the correct counts, in one
    host read (and, data-parallel, one all-reduce of the 2K numbers)."""
    hits = [(lg.argmax(1) == y).sum() for lg, y in zip(logits, labels)]
    totals = torch.cat([torch.stack(ce).detach().double(), torch.stack(hits).double()]).cpu()
    dist.sum_([totals])
    k = len(ce)
    values = totals[:k] / dist.world_size
    if dist.active:
        ce = straight_through(ce, values)
    return ce, values.tolist(), [int(h) for h in totals[k:].tolist()]


def task_parameters(model: MultiTaskModel, tasks: list[str]) -> list[nn.Parameter]:
    """Every task's own trainable parameters, each once, in task order."""
    seen, params = set(), []
    for task in tasks:
        for p in model.task_parameters(task):
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                params.append(p)
    return params


@torch.no_grad()
def losses_after_step(net: MethodNet, model: MultiTaskModel, batches: dict[str, tuple[torch.Tensor, torch.Tensor]],
                      amp: bool, dist: Dist = SINGLE) -> list[torch.Tensor]:
    """The same batches' losses after the update (FAMO), in training mode as the official code does,
    without side effects: BatchNorm statistics and the random generators are put back. Data-parallel:
    the global batch's (one all-reduce of the K values)."""
    buffers = [(b, b.clone()) for b in model.buffers()]
    device = next(iter(batches.values()))[0].device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        losses = []
        for task, (images, labels) in batches.items():
            with autocast(images.device, amp):
                logits = net(images, task)
            losses.append(model.task_loss(task, F.cross_entropy(logits.float(), labels)))
    for buffer, saved in buffers:
        buffer.copy_(saved)
    if dist.active:
        values = torch.stack(losses).double().cpu()
        dist.average_([values])
        losses = [v.to(loss) for v, loss in zip(values, losses)]
    return losses
