"""Data-parallel training over torchrun processes: the process group and the reductions that make N
ranks step exactly as one process does on the global batch.

``torchrun --nproc_per_node N main.py ...`` sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT;
`init_from_env` joins the group (gloo for CPU tensors, plus NCCL for CUDA tensors on a GPU machine).
Without WORLD_SIZE (plain ``python main.py``) it returns `SINGLE`, a one-rank `Dist` whose reductions
do nothing, so the single-process path runs the code it always ran.

Why not ``torch.nn.parallel.DistributedDataParallel``: DDP all-reduces the gradient that ``.backward()``
accumulates, in buckets, as it is produced. Gradient-combination methods take *per-task* gradients with
``torch.autograd.grad``, which DDP's reducer never sees, and they need each task's gradient over the
global batch, not the sum. So the reductions are explicit, at the few points that need them (each one
flat all-reduce per dtype):

* the per-task loss values and correct counts (a 2K-vector): a loss keeps its local gradient but takes
  the global value (`straight_through`), so methods that read loss values (uncertainty, GradNorm, DWA,
  FAMO, 'auto' graph weights) see the global batch's;
* per-task gradients, inside ``mtl.methods.gramian.task_gradients`` (``SharedParts.reducer``): the K x d
  rows and the heads' gradients averaged; for the representation source (each rank holds other
  samples' features) the K x K Gramian is summed instead, which is exact and K x K; methods that need
  more of the representation rows reduce just that: RotoGrad the K + 1 squared norms and its rotation
  loss's gradient (K x r x r), GradDrop the batch sums of sign(z) * grad (K x features);
* fp16: whether a per-task gradient overflowed on any rank (``check_finite``; for representation rows
  one number all-reduced, averaged rows already agree),
  so every rank skips the step;
* after the method's backward (or naive's), every parameter's ``.grad`` averaged: exact for any part of
  the update still computed from local graphs, and a no-op (bitwise, for 2, 4, 8 ranks) on parts
  already averaged;
* the buffers (BatchNorm running statistics) broadcast from rank 0 after each step, as DDP's
  ``broadcast_buffers`` does: rank 0's are the ones checkpointed and used for evaluation.

Every rank runs the same loader stream (same seed, global batch size) and keeps its slice of each
batch, so the task drawn at each step, the images of the global batch and the augmentation are those
of one process; only the slice is read and augmented (mtl/data/batches.py ``shard``). Dropout draws the
global batch's mask on every rank and keeps the rank's rows (mtl/models/dropout.py).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from mtl.errors import UserError

T = TypeVar("T")
_TIMEOUT = dt.timedelta(minutes=30)  # rank 0 evaluates alone while the others wait at the next collective


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def env_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


@dataclass(frozen=True)
class Dist:
    """This process's place in the group and the collectives the training step uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = None  # a torch.distributed group; None = the default (every rank)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- reductions (no-ops on one rank) ---------------------------------------------------------
    def average_(self, tensors: Iterable[Tensor | None]) -> None:
        """Replace each tensor by its mean over the ranks (in place; None entries are skipped)."""
        self._all_reduce([t for t in tensors if t is not None], mean=True)

    def sum_(self, tensors: Iterable[Tensor | None]) -> None:
        """Replace each tensor by its sum over the ranks (in place)."""
        self._all_reduce([t for t in tensors if t is not None], mean=False)

    def broadcast_(self, tensors: Iterable[Tensor]) -> None:
        """Overwrite each tensor with rank 0's (in place; bool tensors are skipped: masks never change)."""
        if not self.active:
            return
        for group in _by_dtype([t for t in tensors if t.dtype != torch.bool]):
            flat = torch._utils._flatten_dense_tensors([t.detach() for t in group])
            torch_dist.broadcast(flat, 0, group=self.group)
            _copy_back(group, flat)

    def any_(self, value: int) -> int:
        """The largest of the ranks' `value`s (e.g. a signal number, 0 = none)."""
        if not self.active:
            return value
        found = torch.tensor([value], dtype=torch.int64)
        torch_dist.all_reduce(found, op=torch_dist.ReduceOp.MAX, group=self.group)
        return int(found)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's picklable `value`, in rank order."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, value, group=self.group)
        return out

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier(group=self.group)

    def main_first(self, fn: Callable[[], T]) -> T:
        """`fn()` on rank 0, then on the others (e.g. building the mini-decathlon once)."""
        if self.is_main:
            result = fn()
            self.barrier()
            return result
        self.barrier()
        return fn()

    def raise_if_any(self, error: str | None) -> None:
        """UserError on every rank when any rank had one (the first rank's message)."""
        errors = [e for e in self.gather(error) if e]
        if errors:
            raise UserError(errors[0])

    def device_for(self, device: torch.device) -> torch.device:
        """A CUDA device becomes this rank's own GPU (LOCAL_RANK); CPU stays CPU."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def close(self, together: bool = False) -> None:
        """Leave the process group. `together` (a run that ended well): first wait until every rank is
        here, so that no rank tears down its gloo transport while a peer still works (rank 0 writes the
        results alone); a follower that left early made the peer abort at exit (SIGABRT, 'terminate
        called without an active exception'), which torchrun reports as a failed job."""
        if not (self.active and torch_dist.is_initialized()):
            return
        if together:
            try:
                torch_dist.barrier(group=self.group)
            except RuntimeError:  # a peer has gone already: nothing left to wait for
                pass
        torch_dist.destroy_process_group()

    def _all_reduce(self, tensors: list[Tensor], mean: bool) -> None:
        if not self.active or not tensors:
            return
        for group in _by_dtype(tensors):
            flat = torch._utils._flatten_dense_tensors([t.detach() for t in group])
            torch_dist.all_reduce(flat, group=self.group)
            if mean:
                flat /= self.world_size
            _copy_back(group, flat)


SINGLE = Dist()


def exit_process(status: int) -> None:
    """End a torchrun rank whose run ended well once its files are closed: flush the logs and the console,
    then `os._exit(status)`, skipping the interpreter's teardown. That teardown (C++ static destructors, after the
    process group is destroyed) aborted a rank about one exit in ten when its output went to a pipe
    (SIGABRT, 'terminate called without an active exception'), and torchrun then reports a job that
    ended well as failed."""
    import logging
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken console loses nothing of the run's own files
            pass
    os._exit(status)


def init_from_env(wants_cuda: bool) -> Dist:
    """Join torchrun's process group (SINGLE without torchrun). `wants_cuda`: the run's device is a GPU."""
    world = env_world_size()
    if world == 1:
        return SINGLE
    rank, local = env_rank(), int(os.environ.get("LOCAL_RANK", "0") or 0)
    if wants_cuda:
        torch.cuda.set_device(local)
    backend = "cpu:gloo,cuda:nccl" if wants_cuda else "gloo"
    torch_dist.init_process_group(backend, rank=rank, world_size=world, timeout=_TIMEOUT)
    return Dist(rank, world, local)


def check_world(batch_size: int, job: str) -> None:
    """User errors of a data-parallel launch, raised identically on every rank before anything exists."""
    world = env_world_size()
    if world == 1:
        return
    if job != "train":
        raise UserError(f"torchrun with {world} processes: only the train job runs data-parallel (this is "
                        f"a {job} job); run it with python main.py (searches scale with --workers / Ray).")
    if batch_size % world:
        raise UserError(f"--batch_size {batch_size} is the global batch; it must split evenly over the "
                        f"{world} processes (e.g. --batch_size {batch_size - batch_size % world or world}).")


def straight_through(values: Sequence[Tensor], global_values: Tensor) -> list[Tensor]:
    """Each value with its local gradient but the global value (`global_values[k]`)."""
    return [v + (g.to(v) - v.detach()) for v, g in zip(values, global_values)]


def state_checksums(state: Any, prefix: str = "") -> dict[str, float]:
    """name -> checksum (float64 sum and weighted sum) of every tensor / number in a nested state."""
    out: dict[str, float] = {}
    if isinstance(state, Tensor):
        flat = state.detach().reshape(-1).double().cpu()
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
        out[prefix] = float(flat.sum() + (flat * weights).sum() * 1e-3) if flat.numel() else 0.0
    elif isinstance(state, dict):
        for key, value in state.items():
            out.update(state_checksums(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(state, (list, tuple)):
        for k, value in enumerate(state):
            out.update(state_checksums(value, f"{prefix}[{k}]"))
    elif isinstance(state, (int, float)) and not isinstance(state, bool):
        out[prefix] = float(state)
    return out


def check_same_state(dist: Dist, what: str, state: Any, step: int) -> None:
    """RuntimeError naming the entries of `state` that differ between ranks (the debug check)."""
    if not dist.active:
        return
    sums = state_checksums(state)
    values = torch.tensor(list(sums.values()) or [0.0], dtype=torch.float64)
    high, low = values.clone(), values.clone()
    torch_dist.all_reduce(high, op=torch_dist.ReduceOp.MAX, group=dist.group)
    torch_dist.all_reduce(low, op=torch_dist.ReduceOp.MIN, group=dist.group)
    differ = [name for name, h, lo in zip(sums, high.tolist(), low.tolist()) if h != lo]
    if differ:
        raise RuntimeError(f"{what} differs between ranks at step {step}: {', '.join(differ[:8])}"
                           f"{' ...' if len(differ) > 8 else ''}")


def model_buffers(model: nn.Module) -> list[Tensor]:
    return [b for b in model.buffers() if b.dtype != torch.bool]


def _by_dtype(tensors: list[Tensor]) -> list[list[Tensor]]:
    groups: dict[tuple, list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    return list(groups.values())


def _copy_back(group: list[Tensor], flat: Tensor) -> None:
    with torch.no_grad():
        for t, reduced in zip(group, torch._utils._unflatten_dense_tensors(flat, group)):
            t.copy_(reduced)
