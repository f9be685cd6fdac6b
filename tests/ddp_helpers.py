"""Data-parallel test helpers: a tiny BatchNorm-free graph model stepped by every method, on one process
or as one of several gloo ranks (spawned by the test) on its slice of the same global batches."""

from __future__ import annotations

import os

import torch

from mtl.data.domains import get_dataset
from mtl.methods import build_method
from mtl.models.graph_config import build_graph_model
from mtl.train.distributed import SINGLE, Dist, check_same_state, exit_process, model_buffers
from mtl.train.task_step import train_step
from mtl.methods.gramian import NonFiniteGradients, check_finite
from mtl.train.method_step import MethodNet, _adapts, multi_task_step
from mtl.train.optim import make_sgd

TASKS = ["digits", "shapes", "colors"]
RES, GLOBAL_BATCH, STEPS = 8, 8, 3
# BatchNorm-free: per-rank BatchNorm normalises each rank's slice, so only without it (or with
# SyncBatchNorm, CUDA only) is the data-parallel step exactly the one-process step.
# Dropout in the heads: every rank draws the global batch's mask and keeps its rows (mtl/models/dropout.py).
_HEAD = [{"type": "pool"}, {"type": "dropout", "p": 0.25},
         {"type": "linear", "in_features": 8, "out_features": "num_classes"}]
NODES = [
    {"name": "body", "module": [{"type": "conv", "in_channels": 3, "out_channels": 8, "stride": 2,
                                 "batch_norm": False}]},
    {"name": "digits", "anchor": "body", "module": _HEAD, "loss_weight": "auto"},
    {"name": "shapes", "anchor": "body", "module": _HEAD},
    {"name": "colors", "anchor": "body", "module": _HEAD},
]
# (method, options, fp16 loss scale or 0): every method's update equals one process's on the global
# batch. A loss scale runs the GradScaler path in float32 (a power of 2: unscaling is exact).
CASES = [("sum", {}, 0), ("pcgrad", {}, 0), ("mgda", {}, 0), ("mgda", {"source": "representation"}, 0),
         ("uncertainty", {}, 0), ("gradnorm", {}, 0), ("gradnorm", {"source": "last_shared"}, 0), ("famo", {}, 0),
         ("naive", {}, 0), ("rotograd", {}, 0), ("rotograd_norm", {"coop_after": 1}, 0), ("rotate_only", {}, 0),
         ("graddrop", {"source": "representation"}, 0),
         ("graddrop", {"source": "representation", "activation_sign": False}, 0),
         ("pcgrad", {}, 2.0 ** 16), ("rotograd", {}, 2.0 ** 16), ("graddrop", {"source": "representation"}, 2.0 ** 16)]


def global_batches(steps: int = STEPS) -> list[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    spec = get_dataset("mini_decathlon")
    return [{t: (torch.randn(GLOBAL_BATCH, 3, RES, RES, generator=generator),
                 torch.randint(0, spec.domain(t).num_classes, (GLOBAL_BATCH,), generator=generator))
             for t in TASKS} for _ in range(steps)]


def train(method_name: str, options: dict, loss_scale: float = 0, dist: Dist = SINGLE) -> dict[str, dict]:
    """`STEPS` steps on this rank's slice of `global_batches()`; the model's and method's state (and the
    GradScaler's, with a `loss_scale`)."""
    torch.manual_seed(0)
    spec = get_dataset("mini_decathlon")
    model = build_graph_model(NODES, [spec.domain(t) for t in TASKS], input_res=RES)
    method = build_method(method_name, len(TASKS), options)
    width = GLOBAL_BATCH // dist.world_size
    rows = slice(dist.rank * width, (dist.rank + 1) * width)
    if method.uses_task_optimizers:
        optimizers = {t: make_sgd(model.parameters_for(t), 0.1, 0.9, 1e-3, True) for t in TASKS}
        for k, batches in enumerate(global_batches()):
            task = TASKS[k % len(TASKS)]  # the loader's curriculum draws the same task on every rank
            images, labels = batches[task]
            train_step(model, optimizers[task], task, images[rows], labels[rows], amp=False, dist=dist)
    else:
        split = getattr(method.options, "source", "") == "representation" or _adapts(method)
        net = MethodNet(model, model, method, TASKS, split=split)
        optimizer = make_sgd(model.parameters(), 0.1, 0.9, 1e-3, True)
        scaler = torch.amp.GradScaler("cpu", init_scale=loss_scale) if loss_scale else None
        for batches in global_batches():
            local = {t: (x[rows], y[rows]) for t, (x, y) in batches.items()}
            multi_task_step(net, model, method, optimizer, local, source="shared", amp=False, dist=dist,
                            scaler=scaler)
            dist.broadcast_(model_buffers(model))
        if scaler is not None:
            return {"model": model.state_dict(), "method": method.state_dict(), "scaler": scaler.state_dict()}
    return {"model": model.state_dict(), "method": method.state_dict()}


def rank_main(rank: int, world: int, init_method: str, out_dir: str) -> None:
    """A spawned gloo rank: every case, each one's final state saved by this rank."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        dist = Dist(rank, world, rank)
        for n, (name, options, loss_scale) in enumerate(CASES):
            torch.save(train(name, options, loss_scale, dist), os.path.join(out_dir, f"case{n}-rank{rank}.pt"))
        try:  # an fp16 overflow in one rank's representation rows stops the step on every rank
            check_finite([torch.tensor([float("inf") if rank else 1.0])], dist)
            overflow = "none"
        except NonFiniteGradients:
            overflow = "raised"
        with open(os.path.join(out_dir, f"overflow-rank{rank}.txt"), "w") as fh:
            fh.write(overflow)
        try:  # the --check_ranks check, on a state that differs between the ranks
            check_same_state(dist, "probe", {"same": torch.ones(2), "differs": torch.tensor([float(rank)])}, 7)
            message = ""
        except RuntimeError as err:
            message = str(err)
        with open(os.path.join(out_dir, f"probe-rank{rank}.txt"), "w") as fh:
            fh.write(message)
    except BaseException:
        import traceback
        with open(os.path.join(out_dir, f"error-rank{rank}.txt"), "w") as fh:
            fh.write(traceback.format_exc())
        raise
    finally:
        torch.distributed.destroy_process_group()
    exit_process(0)  # as torchrun ranks end (mtl/train/distributed.py says why)
