"""Training throughput of ResNet-26, single-task and 4-task partitioned (masked vs sliced).

    python benchmarks/train_throughput.py                  # CUDA if present, else a reduced CPU run
    python benchmarks/train_throughput.py --device cpu --size 72 --batch 32

Model only: synthetic images already on the device, one training step = forward, cross-entropy,
backward, SGD (Nesterov, momentum 0.9, wd 1e-4). The partitioned runs alternate tasks round-robin,
each with its own optimizer (as the training loop does); every task uses a fraction f of the
last-stage conv1 channels, and rates are reported as ratios to the single-task rate of the same run.
On CUDA: bf16 autocast and channels_last. On CPU the defaults are reduced (stated in the output).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from mtl.meta.partition import Partition, from_fractions
from mtl.models import build_model

FRACTIONS = (1.0, 0.5, 0.25)
NUM_TASKS = 4
NUM_CLASSES = 100


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--size", type=int, default=None, help="image side (default 72 on CUDA, 32 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 256 on CUDA, 16 on CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on CUDA, 6 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 on CUDA, 4 on CPU)")
    p.add_argument("--width", type=float, default=1.0, help="ResNet-26 width factor")
    p.add_argument("--layers", default="last_stage_conv1", help="partitioned layers (see mtl.models.partitioned)")
    p.add_argument("--guard", action="store_true", help="wrap each step in model.guard_update(task)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's; 1 is steadier "
                   "on a shared machine)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--data_dir", default="data", help="data root for the end-to-end run (mini-decathlon "
                   "built there when missing; a decathlon domain is used when --domain names one)")
    p.add_argument("--domain", default="digits", help="domain the end-to-end run reads from HDF5")
    p.add_argument("--no_end_to_end", action="store_true", help="model-only figures only")
    return p.parse_args(argv)


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    args.device = torch.device(name)
    cuda = args.device.type == "cuda"
    if cuda:
        defaults = dict(size=72, batch=256, steps=50, warmup=10)
    else:
        defaults = dict(size=32, batch=16, steps=6, warmup=4)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def equal_fraction_partition(f: float, n: int = NUM_TASKS) -> Partition:
    """Every task uses (and updates) a fraction f; pairs share as little as possible."""
    fwd = np.full((n, n), max(0.0, 2 * f - 1))
    np.fill_diagonal(fwd, f)
    return Partition(from_fractions(fwd, np.diag(np.full(n, f))))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model, tasks: list[str], args: argparse.Namespace, batches=None) -> float:
    """Images per second of round-robin training steps over `tasks`.

    With `batches` (an iterator of (task, images, labels)), every step takes its input from it instead
    of reusing one synthetic on-device batch: the end-to-end rate including the data loader.
    """
    cuda = args.device.type == "cuda"
    model = model.to(args.device).train()
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizers = {t: torch.optim.SGD(model.parameters_for(t), lr=0.01, momentum=0.9, nesterov=True,
                                     weight_decay=1e-4) for t in tasks}
    run = torch.compile(model) if args.compile else model
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device).to(memory_format=fmt)
    y = torch.randint(0, NUM_CLASSES, (args.batch,), device=args.device)

    def step(i: int) -> None:
        nonlocal x, y
        task = tasks[i % len(tasks)]
        if batches is not None:
            _, x, y = next(batches)
            x = x.contiguous(memory_format=fmt)
        with torch.autocast(args.device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(run(x, task), y)
        optimizers[task].zero_grad(set_to_none=True)
        loss.backward()
        if args.guard and hasattr(model, "guard_update"):
            with model.guard_update(task):
                optimizers[task].step()
        else:
            optimizers[task].step()

    for i in range(args.warmup):
        step(i)
    _sync(args.device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    _sync(args.device)
    return args.batch * args.steps / (time.perf_counter() - start)


def run_model_only(args: argparse.Namespace) -> dict:
    """Single-task rate (before and after, averaged), partitioned rates per (fraction, mode)."""
    torch.manual_seed(0)
    tasks = [(f"task{i}", NUM_CLASSES) for i in range(NUM_TASKS)]
    names = [t for t, _ in tasks]

    def single() -> float:
        return measure(build_model("resnet26", tasks[:1], width=args.width), ["task0"], args)

    single()  # untimed: the first run of a process pays for allocator growth and kernel selection
    before = single()
    partitioned = {}
    for f in FRACTIONS:
        partitioned[str(f)] = {
            mode: measure(build_model("partitioned_resnet26", tasks, partition=equal_fraction_partition(f),
                                      partition_layers=args.layers, exec_mode=mode, width=args.width), names, args)
            for mode in ("masked", "sliced")}
    after = single()
    rate = (before + after) / 2
    print(f"single-task ResNet-26: {rate:,.0f} images/s (before {before:,.0f}, after {after:,.0f})")
    for f, rates in partitioned.items():
        m, s = rates["masked"], rates["sliced"]
        print(f"4 tasks, f={f:<5} masked {m:>9,.0f} images/s ({m / rate:.2f}x)   "
              f"sliced {s:>9,.0f} images/s ({s / rate:.2f}x)   sliced/masked {s / m:.2f}x")
    return {"single_task": rate, "single_task_before_after": [before, after], "partitioned": partitioned}


def run_end_to_end(args: argparse.Namespace, model_only_rate: float) -> dict:
    """Single-task training fed by the HDF5 loader (device-side augmentation included)."""
    from mtl.data.batches import MultiDomainLoader
    from mtl.data.mini import MINI_DECATHLON
    from mtl.data.prepare import ensure_embedded

    if args.domain in MINI_DECATHLON.names:
        folder = ensure_embedded("mini_decathlon", args.data_dir)
    else:
        folder = Path(args.data_dir) / "decathlon"
    loader = MultiDomainLoader(folder, [args.domain], batch_size=args.batch, device=args.device, seed=0,
                               input_res=args.size, in_memory=True, prefetch=2)
    try:
        model = build_model("resnet26", [(args.domain, NUM_CLASSES)], width=args.width)
        rate = measure(model, [args.domain], args, batches=loader)
    finally:
        loader.close()
    print(f"single-task end to end from {folder}/{args.domain}.h5: {rate:,.0f} images/s "
          f"({rate / model_only_rate:.2f}x model-only)")
    return {"end_to_end": rate, "ratio_to_model_only": rate / model_only_rate}


def main(argv=None) -> None:
    args = resolve(parse_args(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    device_name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads)"
    precision = "bf16 autocast + channels_last" if args.device.type == "cuda" else "fp32"
    print(f"device {device_name}; {args.size}px, batch {args.batch}, width {args.width}, {args.steps} timed "
          f"steps after {args.warmup}; {precision}"
          f"{'; torch.compile' if args.compile else ''}; partitioned layers: {args.layers}")
    results = {"config": {k: str(v) for k, v in vars(args).items()}, "model_only": run_model_only(args)}
    if not args.no_end_to_end:
        results["end_to_end"] = run_end_to_end(args, results["model_only"]["single_task"])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
