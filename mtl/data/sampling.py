"""Which domain each training step uses, and which images: seeded, resumable, no hidden RNG state.

Randomness is derived from (seed, purpose, counters) rather than kept in generator objects, so the state
to checkpoint is a few integers: the step and, per domain, (epoch, position) in that epoch's permutation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mtl.util.rng import derive_seed

POLICIES = ("uniform", "proportional", "train_accuracy", "fixed")
CURRICULUM_OFFSET = 0.15  # original: p ∝ (1 - acc + 0.15) ** (1 / 0.3), favouring tasks still badly fit
CURRICULUM_TEMPERATURE = 0.3


def generator_for(*values: int) -> torch.Generator:
    """A CPU torch.Generator seeded from `values`."""
    return torch.Generator().manual_seed(derive_seed(*values))


def domain_probabilities(policy: str, sizes: Sequence[int], accuracies: Sequence[float], *,
                         temperature: float = CURRICULUM_TEMPERATURE, bias: float = CURRICULUM_OFFSET,
                         order: Sequence[int] | None = None) -> list[float]:
    """Sampling probability per domain.

    Args:
        policy: "uniform", "proportional" (to the number of training images), "train_accuracy"
            (p ∝ (1 - acc + 0.15)^(1/0.3), the original system's curriculum) or "fixed" (each domain's
            share of `order`; the steps themselves follow `fixed_domain`).
        sizes: training images per domain.
        accuracies: latest training accuracy per domain, fractions in [0, 1].
        temperature, bias: of train_accuracy, p ∝ (1 - acc + bias)^(1/temperature) (the original's
            --temperature and --curriculum_bias: softmax(log(1 - acc + bias) / temperature)).
        order: of "fixed" (default: round robin).
    """
    if policy == "fixed":
        order = range(len(sizes)) if order is None else order
        weights = [float(sum(1 for k in order if k == d)) for d in range(len(sizes))]
    elif policy == "uniform":
        weights = [1.0] * len(sizes)
    elif policy == "proportional":
        weights = [float(s) for s in sizes]
    elif policy == "train_accuracy":
        weights = [(1.0 - a + bias) ** (1.0 / temperature) for a in accuracies]
    else:
        raise ValueError(f"unknown sampling policy {policy!r} (choices: {', '.join(POLICIES)})")
    total = sum(weights)
    return [w / total for w in weights]


def fixed_domain(order: Sequence[int] | None, num_domains: int, step: int) -> int:
    """The "fixed" curriculum's domain for `step`: `order` cycled by the global step, as the original's
    fixed curriculum (its dec_order.npy); without an order, round robin (the original's "uniform")."""
    return step % num_domains if order is None else int(order[step % len(order)])


def load_task_order(path: str, num_tasks: int) -> list[int]:
    """A fixed curriculum from a .npy (the original's dec_order.npy) or .json file of task positions
    (0-based, in task order); ValueError naming the problem."""
    try:
        values = np.load(path) if str(path).endswith(".npy") else np.asarray(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the task order {path}: {exc}") from exc
    if values.ndim != 1 or len(values) == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"the task order {path} must be a non-empty list of integers")
    if values.min() < 0 or values.max() >= num_tasks:
        raise ValueError(f"the task order {path} holds positions outside 0..{num_tasks - 1} (one per task)")
    return values.tolist()


def choose_domain(probabilities: Sequence[float], seed: int, step: int) -> int:
    """The domain index for `step` (a pure function of its arguments)."""
    weights = torch.tensor(probabilities, dtype=torch.float64)
    return int(torch.multinomial(weights, 1, generator=generator_for(seed, 1, step)).item())


class IndexStream:
    """Epoch-wise shuffled indices of one domain: each epoch a fresh seeded permutation, read in order.

    State: (epoch, position). A batch that crosses an epoch's end continues into the next permutation.
    """

    def __init__(self, size: int, seed: int, domain_index: int):
        if size <= 0:
            raise ValueError("cannot sample batches from a domain with no images")
        self.size, self.seed, self.domain_index = size, seed, domain_index
        self.epoch, self.position = 0, 0
        self._cached: tuple[int, torch.Tensor] | None = None

    def take(self, count: int) -> np.ndarray:
        """The next `count` indices, sorted (order within a batch does not matter; sorted reads are faster)."""
        parts = []
        while count > 0:
            permutation = self._permutation(self.epoch)
            chunk = permutation[self.position : self.position + count]
            parts.append(chunk)
            count -= len(chunk)
            self.position += len(chunk)
            if self.position == self.size:
                self.epoch, self.position = self.epoch + 1, 0
        return np.sort(np.concatenate(parts))

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            generator = generator_for(self.seed, 2, self.domain_index, epoch)
            self._cached = (epoch, torch.randperm(self.size, generator=generator).numpy())
        return self._cached[1]

    def state_dict(self) -> list[int]:
        return [self.epoch, self.position]

    def load_state_dict(self, state: Sequence[int]) -> None:
        self.epoch, self.position = int(state[0]), int(state[1])
