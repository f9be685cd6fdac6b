"""Proxy evaluations per hour through each worker backend: in-process vs local (N workers) vs Ray (N actors).

    python benchmarks/pool_throughput.py                                    # mini size, 2 workers, 9 repeats
    python benchmarks/pool_throughput.py --generation 8                     # half an ES generation
    python benchmarks/pool_throughput.py --steps 4 --val_images 8 --repeats 1 --generation 4   # smoke size

Each backend evaluates the same generations of random partitions with the distillation proxy on a
synthetic feature cache of mini size (ResNet-26 width 0.25, 32 px, 6 tasks; benchmarks/proxy_throughput.py
explains why synthetic features cost the same). Every pool is built once and warmed up with one
generation (worker start, cache build), then the backends are measured in interleaved rounds
(inprocess, local, ray, inprocess, ...) so that a change of machine load hits all of them; the table
gives the median rate over the rounds and the max/min spread, and the speedup over in-process as the
median [min, max] of each round's own ratio (the two rates measured side by side).

A generation is 16 candidates by default, as an ES generation (exp.es_dist: 8 antithetic pairs); each of
N workers stacks 16 / N of them (on one CPU thread at mini size, stacks of 4, 8 and 16 ran within 8 % of
each other). `--backends inprocess,local` leaves Ray out: a local Ray cluster's own processes take a
share of a small machine from every backend while it is up.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_throughput import SyntheticCache  # noqa: E402

from mtl.data.domains import DECATHLON  # noqa: E402
from mtl.distill.population import evaluate_population  # noqa: E402
from mtl.distill.proxy import ProxySchedule  # noqa: E402
from mtl.meta.optimizers.base import Candidate  # noqa: E402
from mtl.meta.partition import Partition, preset  # noqa: E402
from mtl.meta.pool import current_device, make_pool  # noqa: E402


@dataclass
class SyntheticProxy:
    """A picklable proxy objective: the synthetic cache is built on first use in each worker (like ProxyObjective)."""

    tasks: tuple[str, ...]
    width: float
    input_res: int
    steps: int
    val_images: int
    threads: int

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def evaluate_batch(self, params_list, seeds):
        import torch

        if getattr(self, "_cache", None) is None:
            if self.threads:
                torch.set_num_threads(self.threads)
            self._cache = SyntheticCache(self.tasks, width=self.width, input_res=self.input_res,
                                         train_images=self.schedule.train_images(len(self.tasks)),
                                         val_images=self.val_images, device=current_device())
        partitions = [Partition(p["partition"], tasks=list(self.tasks), seed=s) for p, s in zip(params_list, seeds)]
        return evaluate_population(self._cache, partitions, list(seeds), self.schedule)

    def __call__(self, params, seed):
        return self.evaluate_batch([params], [seed])[0]

    @property
    def schedule(self) -> ProxySchedule:
        return ProxySchedule(steps=self.steps, batch_size=4, lr_drop_steps=(2 * self.steps // 3,))


def generation(tasks: tuple[str, ...], size: int, index: int) -> list[Candidate]:
    out = []
    for k in range(size):
        raw = preset("random", len(tasks), seed=1000 * index + k).raw.tolist()
        out.append(Candidate(f"gen{index:04d}/cand{k:03d}", index, k, {"partition": raw}, seed=1000 * index + k))
    return out


def run_generation(pool, candidates) -> float:
    """Seconds to evaluate one generation through `pool` (every evaluation must succeed)."""
    start = time.perf_counter()
    futures = [pool.submit(c) for c in candidates]
    for future in pool.as_completed(futures):
        future.result()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="local workers and Ray actors")
    parser.add_argument("--generation", type=int, default=16, help="candidates per generation (16: an ES generation)")
    parser.add_argument("--repeats", type=int, default=9, help="measured rounds per backend (after a warm-up)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--val_images", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--input_res", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--backends", default="inprocess,local,ray")
    args = parser.parse_args()

    tasks = tuple(DECATHLON.names[1:1 + args.tasks])
    cores = os.cpu_count() or 1
    objective = SyntheticProxy(tasks, args.width, args.input_res, args.steps, args.val_images,
                               threads=max(1, cores // args.workers))
    backends = args.backends.split(",")
    options = {"inprocess": {}, "local": {"devices": ["cpu"] * args.workers},
               "ray": {"num_cpus": args.workers, "num_actors": args.workers}}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still closes the pools (and Ray)
    pools = {name: make_pool(name, objective, **options[name]) for name in backends}
    try:
        index = 0
        for name in backends:  # warm-up: worker start, imports, cache build
            run_generation(pools[name], generation(tasks, args.generation, index))
            index += 1
        rates: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(args.repeats):
            for name in backends:
                seconds = run_generation(pools[name], generation(tasks, args.generation, index))
                rates[name].append(3600 * args.generation / seconds)
                print(f"round {len(rates[name])} {name}: {rates[name][-1]:.0f} evals/h", flush=True)
                index += 1
    finally:
        for pool in pools.values():
            pool.close()
    print(f"{len(tasks)} tasks, width {args.width}, {args.input_res} px, {args.steps} steps, {args.val_images} val "
          f"images/task, generation {args.generation}, {args.workers} workers, {cores} cores, {args.repeats} rounds")
    print(f"{'backend':<10} {'evals/h (median)':>17} {'max/min':>8} {'vs ' + backends[0] + ' (per round)':>30}")
    for name in backends:
        ratios = [r / b for r, b in zip(rates[name], rates[backends[0]])]
        spread = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"
        print(f"{name:<10} {statistics.median(rates[name]):17.0f} {max(rates[name]) / min(rates[name]):8.2f} "
              f"{spread:>30}")


if __name__ == "__main__":
    main()
