"""Data-parallel scaling of the train job's combined step: 1 rank vs N ranks on the same global batch.

    python benchmarks/ddp_scaling.py                        # CPU: 1 vs 2 gloo processes, mini size
    python benchmarks/ddp_scaling.py --ranks 1,2,4,8        # CUDA: NCCL over the visible GPUs

Spawns max(ranks) processes once (one thread each on CPU). Each repeat times every variant in turn
(interleaved, so a shared machine's load hits them alike): for a variant of n ranks, ranks 0..n-1 step
the partitioned ResNet-26 with the chosen method on their slices of one global batch per task (the
step of mtl/train/method_step.py with mtl/train/distributed.py's reductions) while the others wait.
Synthetic images already on the device; warm-up steps first; median and spread (max/min) of
images/s over the repeats; the speed-up is the ratio of medians, printed with the ratio of the
worst to the best repeat's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

TASKS = 3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--ranks", default="", help="comma list of rank counts (default 1,2 on CPU; 1..GPUs on CUDA)")
    p.add_argument("--method", default="sum", help="MTL method (mtl/methods)")
    p.add_argument("--width", type=float, default=0.25, help="ResNet-26 width (mini size)")
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--batch", type=int, default=32, help="global batch per task")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before the first repeat")
    p.add_argument("--repeats", type=int, default=5, help="repeats of every variant (interleaved)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    args.device = "cuda" if cuda else "cpu"
    gpus = torch.cuda.device_count() if cuda else 0
    default = [1, 2] if not cuda else sorted({1, min(2, gpus), gpus})  # one GPU: the 1-rank row only
    args.ranks = [int(r) for r in args.ranks.split(",")] if args.ranks else default
    if cuda and max(args.ranks) > torch.cuda.device_count():
        p.error(f"--ranks {max(args.ranks)}: only {torch.cuda.device_count()} GPU(s) visible")
    if any(args.batch % r for r in args.ranks):
        p.error(f"--batch {args.batch} must split evenly over {args.ranks} ranks")
    return args


def _setup(args, dist, device):
    from mtl.data.domains import get_dataset
    from mtl.methods import build_method
    from mtl.models import build_model
    from mtl.train.method_step import MethodNet, _adapts
    from mtl.train.optim import make_sgd

    torch.manual_seed(0)
    domains = [get_dataset("mini_decathlon").domain(t) for t in ("digits", "shapes", "colors")][:TASKS]
    model = build_model("partitioned_resnet26", domains, width=args.width).to(device)
    method = build_method(args.method, TASKS, {}).to(device)
    split = getattr(method.options, "source", "") == "representation" or _adapts(method)  # e.g. rotograd
    net = MethodNet(model, model, method, [d.name for d in domains], split=split)
    optimizer = make_sgd(model.parameters(), 0.01, 0.9, 1e-4, True)
    width = args.batch // dist.world_size
    batches = {d.name: (torch.randn(width, 3, args.size, args.size, device=device),
                        torch.randint(0, d.num_classes, (width,), device=device)) for d in domains}
    return model, method, net, optimizer, batches


def _time_variant(args, n: int, rank: int, device, group) -> float | None:
    """Images/s (global) of the timed steps with ranks 0..n-1 (None on the ranks that wait)."""
    from mtl.train.distributed import Dist, model_buffers
    from mtl.train.method_step import multi_task_step

    if rank >= n:
        return None
    dist = Dist(rank, n, rank, group) if n > 1 else Dist()
    model, method, net, optimizer, batches = _setup(args, dist, device)
    amp = torch.bfloat16 if device.type == "cuda" else False
    for _ in range(args.warmup):
        multi_task_step(net, model, method, optimizer, batches, source="shared", amp=amp, dist=dist)
    _sync(device, dist)
    started = time.perf_counter()
    for _ in range(args.steps):
        multi_task_step(net, model, method, optimizer, batches, source="shared", amp=amp, dist=dist)
        dist.broadcast_(model_buffers(model))
    _sync(device, dist)
    return args.batch * TASKS * args.steps / (time.perf_counter() - started)


def _sync(device, dist) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()


def _rank_main(rank: int, args, init_file: str, out_file: str) -> None:
    world = max(args.ranks)
    device = torch.device("cuda", rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(1) if device.type == "cpu" else None
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    torch_dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    rates: dict[int, list[float]] = {n: [] for n in args.ranks}
    groups = {n: torch_dist.new_group(list(range(n))) if n > 1 else None for n in args.ranks}  # every rank
    try:
        for _ in range(args.repeats):
            for n in args.ranks:  # interleaved: every variant once per repeat
                rate = _time_variant(args, n, rank, device, groups[n])
                torch_dist.barrier()
                if rate is not None:
                    rates[n].append(rate)
        if rank == 0:
            with open(out_file, "w") as fh:
                json.dump({str(n): r for n, r in rates.items()}, fh)
    finally:
        torch_dist.destroy_process_group()


def summarise(rates: dict[str, list[float]]) -> list[dict]:
    """Per variant: median images/s, spread (max/min) and the speed-up over the first variant."""
    rows, base = [], None
    for n, values in rates.items():
        median = statistics.median(values)
        base = base or (median, min(values), max(values))
        rows.append({"ranks": int(n), "images_per_s": median, "spread": max(values) / min(values),
                     "speedup": median / base[0], "speedup_range": (min(values) / base[2], max(values) / base[1]),
                     "repeats": len(values)})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rates.json")
        mp.start_processes(_rank_main, args=(args, os.path.join(tmp, "init"), out), nprocs=max(args.ranks),
                           start_method="spawn", join=True)
        with open(out) as fh:
            rows = summarise(json.load(fh))
    print(f"data-parallel scaling, {args.device}: method {args.method}, partitioned ResNet-26 width {args.width}, "
          f"{args.size}px, global batch {args.batch} x {TASKS} tasks, {args.warmup} warm-up + {args.steps} timed "
          f"steps x {args.repeats} repeats (interleaved); 1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs (a busy machine's figure is not the quiet one)")
    print(f"{'ranks':>5} {'images/s':>10} {'spread':>7} {'speed-up':>9} {'(worst..best)':>15}")
    for r in rows:
        low, high = r["speedup_range"]
        print(f"{r['ranks']:>5} {r['images_per_s']:>10.1f} {r['spread']:>6.2f}x {r['speedup']:>8.2f}x "
              f"{low:>7.2f}..{high:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": args.device, "method": args.method, "rows": rows,
                       "load_average": [load_before, os.getloadavg()[0]], "cpus": os.cpu_count()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
