"""Meta-optimizers over a Space: ES (and its multi-objective variant), random search, grid, runner, Nevergrad."""

from mtl.meta.optimizers import es, grid, nevergrad, random_search, runner  # noqa: F401  (register)
from mtl.meta.optimizers.base import OPTIMIZERS, Candidate, MetaOptimizer, create_optimizer

__all__ = ["OPTIMIZERS", "Candidate", "MetaOptimizer", "create_optimizer"]
