"""Random search: each generation evaluates `batch_size` independent draws from the space.

The natural baseline for partition search (reference/original-system.md §3.10): partitions are
drawn like ES's initial samples, hyperparameters uniformly in unit coordinates (log-uniform on a
log scale). Generation g's draws depend only on (seed, g), so a resumed search proposes the same.
"""

from __future__ import annotations

from mtl.meta.optimizers.base import OPTIMIZERS, Candidate, MetaOptimizer, generation_rng
from mtl.meta.space import Space


@OPTIMIZERS.register("random")
class RandomSearch(MetaOptimizer):
    """Independent samples, best by score.

    Args:
        batch_size: candidates per generation; sets only how many are in flight together.
    """

    name = "random"

    def __init__(self, space: Space, seed: int = 0, batch_size: int = 16):
        super().__init__(space, seed)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    def options(self) -> dict:
        return {"batch_size": self.batch_size}

    def ask(self) -> list[Candidate]:
        rng = generation_rng(self.seed, self.generation)
        return self._candidates([self.space.sample(rng) for _ in range(self.batch_size)])
