"""P candidates scored together in one process: same cached teacher features, same batches, stacked students.

Each candidate keeps its own partition, seed (initial weights, mask sampling through the partition's
seed) and optimizer state; only the execution is shared (see mtl/distill/student.py), so a candidate's
population result equals its result evaluated alone up to float rounding (tests/test_distill_population.py).
"""

from __future__ import annotations

from typing import Sequence

from mtl.distill.features import FeatureCache
from mtl.distill.proxy import ProxySchedule, ProxyTrainer, build_student
from mtl.meta.partition import Partition


def evaluate_population(cache: FeatureCache, partitions: Sequence[Partition], seeds: Sequence[int],
                        schedule: ProxySchedule, *, max_population: int = 0, init: dict | None = None,
                        stack: str = "grouped", amp: bool = False, layers: str = "last_stage_conv1") -> list[dict]:
    """Train and score every candidate, `max_population` at a time (0: all at once).

    Args:
        cache: teacher features of the proxy's images.
        partitions, seeds: one per candidate (seed: initial student weights).
        schedule: the proxy's schedule.
        max_population: largest stack trained at once (bounds memory); 0 = no limit.
        init: optional common initial weights (`load_student_init`).
        stack: "grouped" or "vmap".
        amp: bf16 autocast on CUDA.
        layers: partitioned layers of the student ("last_stage_conv1" or "last_stage").

    Returns:
        One result dict per candidate, in order (see `ProxyTrainer.score`).
    """
    if len(partitions) != len(seeds):
        raise ValueError(f"{len(partitions)} partitions but {len(seeds)} seeds")
    size = max_population or len(partitions)
    results: list[dict] = []
    for start in range(0, len(partitions), size):
        chunk = slice(start, start + size)
        student = build_student(cache, partitions[chunk], seeds[chunk], init=init, stack=stack, layers=layers)
        trainer = ProxyTrainer(cache, student, schedule, amp)
        trainer.train()
        results.extend(trainer.score())
    return results
