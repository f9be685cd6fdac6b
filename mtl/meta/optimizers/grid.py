"""Grid search: `steps` evenly spaced unit coordinates per dimension, enumerated in `batch_size` chunks.

Meant for a few hyperparameters (e.g. the original's fixed_sharing baselines over share_amt, or a
temperature x bias curriculum grid); the product is refused above `max_points`. Integer
hyperparameters whose range has fewer values than `steps` contribute each value once.
"""

from __future__ import annotations

import math

import numpy as np

from mtl.errors import UserError
from mtl.meta.optimizers.base import OPTIMIZERS, Candidate, MetaOptimizer
from mtl.meta.space import Hyperparameter, Space


@OPTIMIZERS.register("grid")
class GridSearch(MetaOptimizer):
    """Exhaustive grid in row-major order (last dimension fastest); finished when enumerated.

    Args:
        steps: points per continuous dimension (evenly spaced, both ends included).
        batch_size: candidates per generation (how many are in flight together).
        max_points: refuse a grid of more points than this (a user error before anything runs).
    """

    name = "grid"

    def __init__(self, space: Space, seed: int = 0, steps: int = 5, batch_size: int = 16,
                 max_points: int = 100_000):
        super().__init__(space, seed)
        self.steps, self.batch_size, self.max_points = int(steps), int(batch_size), int(max_points)
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        self.axes = self._axes()
        self.size = math.prod(len(a) for a in self.axes)
        if self.size > self.max_points:
            raise UserError(f"grid of {self.size} points exceeds max_points={self.max_points}; "
                            f"lower steps or search fewer dimensions")

    def _axes(self) -> list[np.ndarray]:
        """Unit coordinates per dimension."""
        axes = []
        for block in self.space.blocks:
            for _ in range(block.dim):
                axis = np.linspace(0.0, 1.0, self.steps) if self.steps > 1 else np.array([0.5])
                if isinstance(block, Hyperparameter) and block.integer:
                    values = sorted({block.to_value(u) for u in axis})
                    axis = np.array([block.to_unit(v) for v in values])
                axes.append(axis)
        return axes

    def options(self) -> dict:
        return {"steps": self.steps, "batch_size": self.batch_size}

    @property
    def finished(self) -> bool:
        return self.generation * self.batch_size >= self.size

    def ask(self) -> list[Candidate]:
        start = self.generation * self.batch_size
        indices = range(start, min(start + self.batch_size, self.size))
        return self._candidates([self.point(i) for i in indices])

    def point(self, index: int) -> np.ndarray:
        """The index-th grid point (mixed-radix decoding)."""
        coords = []
        for axis in reversed(self.axes):
            index, digit = divmod(index, len(axis))
            coords.append(axis[digit])
        return np.array(coords[::-1])
