"""The machine's own ceiling for running N one-thread processes at once, with no pool in between.

    python benchmarks/cpu_scaling.py                 # 1 vs 2 processes, 5 interleaved repeats
    python benchmarks/cpu_scaling.py --procs 4 --repeats 3

Each process runs the same fixed workload: forward and backward of a small stack of 3x3 convolutions
at the proxy's mini shapes (batch 8 x 16 candidates, 32 channels, 8 x 8), one torch thread. A round
times the workload in one process alone, then in N processes started together; the speedup of the
round is N x (time alone) / (time of the slowest of the N). Rounds interleave the two so that a change
of machine load hits both. The table gives the median and the min-max spread over the rounds. On a
virtual machine whose cores share physical ones (or memory bandwidth) the ceiling is below N, and no
worker pool (benchmarks/pool_throughput.py) can beat it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time


def workload(iters: int, barrier=None, results=None, slot: int = 0) -> float:
    """Seconds for `iters` forward + backward passes of the fixed conv stack (one torch thread); with a
    barrier, the timing starts when every process is ready (imports and warm-up done)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    convs = torch.nn.Sequential(*[torch.nn.Conv2d(32 * 16, 32 * 16, 3, padding=1, groups=16) for _ in range(4)])
    x = torch.randn(8, 32 * 16, 8, 8)
    convs(x).square().mean().backward()  # warm-up (allocations, kernel choice)
    if barrier is not None:
        barrier.wait()
    start = time.perf_counter()
    for _ in range(iters):
        convs(x).square().mean().backward()
    seconds = time.perf_counter() - start
    if results is not None:
        results[slot] = seconds
    return seconds


def timed_together(procs: int, iters: int) -> list[float]:
    """Each process's workload time when `procs` of them start timing at the same moment."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Array("d", procs)
    workers = [ctx.Process(target=workload, args=(iters, barrier, results, k)) for k in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"a workload process exited with status {w.exitcode}")
    return list(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    speedups, alone_times = [], []
    for _ in range(args.repeats):
        alone = timed_together(1, args.iters)[0]
        together = max(timed_together(args.procs, args.iters))
        alone_times.append(alone)
        speedups.append(args.procs * alone / together)
    print(f"| processes | workload alone (s, median [min, max]) | speedup of {args.procs} at once (median [min, max]) |")
    print("|---|---|---|")
    print(f"| {args.procs} | {statistics.median(alone_times):.2f} [{min(alone_times):.2f}, {max(alone_times):.2f}] "
          f"| {statistics.median(speedups):.2f}x [{min(speedups):.2f}, {max(speedups):.2f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
