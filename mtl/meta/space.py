"""Declared search spaces: partition-matrix blocks and plain hyperparameter ranges over a unit cube.

Every optimizer works on a flat vector `u` in [0, 1]^dim ("unit coordinates"); the space maps it to
a JSON-able params dict (`to_params`) and back (`to_vector`). A partition block holds the meaningful
entries (diagonal + strict upper triangle) of the raw [2, N, N] forward/backward matrices
(reference/original-system.md §3.6); a hyperparameter is a linear or log range, float or int, as in
the original's `config/cmd/es.txt` lines ("flag default min max scale is_int").
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from mtl.errors import UserError

SCALES = ("linear", "log")


@dataclass(frozen=True)
class Hyperparameter:
    """A scalar in [low, high], linear or log scale, float or int; one unit coordinate."""

    name: str
    low: float
    high: float
    scale: str = "linear"
    integer: bool = False
    default: float | None = None

    dim = 1  # unit coordinates taken (class constant, not a field)

    def __post_init__(self):
        if self.scale not in SCALES:
            raise UserError(f"hyperparameter {self.name!r}: scale must be one of {SCALES}, got {self.scale!r}")
        if not self.low < self.high:
            raise UserError(f"hyperparameter {self.name!r}: need low < high, got [{self.low}, {self.high}]")
        if self.scale == "log" and self.low <= 0:
            raise UserError(f"hyperparameter {self.name!r}: a log scale needs low > 0, got {self.low}")

    def _bounds(self) -> tuple[float, float]:
        # Integers get half a step of margin so that every integer in range has an equal share of u.
        low, high = (self.low - 0.5, self.high + 0.5) if self.integer else (self.low, self.high)
        if self.scale == "log":
            return math.log(max(low, 1e-12)), math.log(high)
        return low, high

    def to_value(self, u: float) -> float | int:
        """Unit coordinate -> value in [low, high] (rounded and clipped for integers)."""
        lo, hi = self._bounds()
        x = lo + float(np.clip(u, 0.0, 1.0)) * (hi - lo)
        x = math.exp(x) if self.scale == "log" else x
        if self.integer:
            return int(min(max(round(x), self.low), self.high))
        return min(max(x, self.low), self.high)

    def to_unit(self, value: float) -> float:
        """Value -> unit coordinate (inverse of `to_value`; integers map to their share's centre)."""
        lo, hi = self._bounds()
        x = math.log(value) if self.scale == "log" else float(value)
        return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))

    def default_unit(self) -> float:
        """Unit coordinate of `default`, else of the range's midpoint."""
        return 0.5 if self.default is None else self.to_unit(self.default)

    def spec(self) -> dict:
        return {"kind": "hyperparameter", "name": self.name, "low": self.low, "high": self.high,
                "scale": self.scale, "integer": self.integer, "default": self.default}


@dataclass(frozen=True)
class PartitionBlock:
    """Raw partition matrices [2, N, N] in [0, 1]: index 0 forward (channels used), 1 backward (updated).

    Only the diagonal and strict upper triangle are searched; `to_value` mirrors them into a symmetric
    matrix. The forward diagonal holds the per-task channel fractions f_i (the resource).
    Random samples follow the original's "restrict" draw: forward diag ~ restrict_amt + N(0, 0.2^2),
    backward diag ~ 1 + N(0, 0.15^2), off-diagonals ~ U(0, 1), all clamped to [0.05, 1].
    With `fixed_fraction` > 0 every task's channel fraction is that value whatever the coordinates say:
    the search is over what tasks share at one resource level.
    """

    tasks: tuple[str, ...]
    name: str = "partition"
    restrict_amt: float = 0.5
    fixed_fraction: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if len(self.tasks) < 1 or len(set(self.tasks)) != len(self.tasks):
            raise UserError(f"partition {self.name!r}: need distinct task names, got {list(self.tasks)}")

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def dim(self) -> int:
        n = self.num_tasks
        return n * (n + 1)  # 2 matrices x n(n+1)/2 entries

    def _entries(self) -> list[tuple[int, int, int]]:
        """(matrix, row, col) of each unit coordinate, in order."""
        return _partition_entries(self.num_tasks)

    def to_value(self, u: np.ndarray) -> list:
        """Unit coordinates -> raw [2, N, N] nested lists (symmetric)."""
        n = self.num_tasks
        mat = np.zeros((2, n, n))
        for x, (m, r, c) in zip(np.clip(u, 0.0, 1.0), self._entries()):
            mat[m, r, c] = mat[m, c, r] = x
        if self.fixed_fraction > 0:
            mat[0][np.diag_indices(n)] = self.fixed_fraction
        return mat.tolist()

    def to_unit(self, value) -> np.ndarray:
        """Raw [2, N, N] (lower triangle ignored) -> unit coordinates."""
        mat = np.asarray(value, dtype=float)
        if mat.shape != (2, self.num_tasks, self.num_tasks):
            raise UserError(f"partition {self.name!r}: expected shape (2, {self.num_tasks}, {self.num_tasks}), "
                            f"got {mat.shape}")
        return np.clip(np.array([mat[m, r, c] for m, r, c in self._entries()]), 0.0, 1.0)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random partition in unit coordinates ("restrict" draw)."""
        out = rng.uniform(size=self.dim)
        diag = self.forward_diag_mask() | self.backward_diag_mask()
        centre = np.where(self.forward_diag_mask(), self.restrict_amt, 1.0)
        spread = np.where(self.forward_diag_mask(), 0.2, 0.15)
        out[diag] = centre[diag] + spread[diag] * rng.standard_normal(int(diag.sum()))
        return np.clip(out, 0.05, 1.0)

    def default_unit(self) -> np.ndarray:
        """share_all: every task uses and updates every channel."""
        return np.ones(self.dim)

    def forward_diag_mask(self) -> np.ndarray:
        return np.array([m == 0 and r == c for m, r, c in self._entries()])

    def backward_diag_mask(self) -> np.ndarray:
        return np.array([m == 1 and r == c for m, r, c in self._entries()])

    def task_masks(self) -> np.ndarray:
        """[N, dim] 0/1: the entries in task t's row or column (both matrices)."""
        return np.array([[float(t in (r, c)) for _, r, c in self._entries()] for t in range(self.num_tasks)])

    def resource_per_task(self, value) -> dict[str, float]:
        """Per-task channel fraction f_i = forward diagonal of the raw matrix."""
        mat = np.asarray(value, dtype=float)
        return {t: float(mat[0, i, i]) for i, t in enumerate(self.tasks)}

    def spec(self) -> dict:
        spec = {"kind": "partition", "name": self.name, "tasks": list(self.tasks), "restrict_amt": self.restrict_amt}
        return {**spec, "fixed_fraction": self.fixed_fraction} if self.fixed_fraction > 0 else spec


@functools.lru_cache(maxsize=None)
def _partition_entries(n: int) -> list[tuple[int, int, int]]:
    rows, cols = np.triu_indices(n)
    return [(m, int(r), int(c)) for m in (0, 1) for r, c in zip(rows, cols)]


Block = Hyperparameter | PartitionBlock


@dataclass(frozen=True)
class Space:
    """An ordered list of blocks; a point is a flat unit vector (`dim` long) or a params dict.

    Empty (dim 0) only for the runner, whose variants are fixed option sets (the search job refuses
    it for every other optimizer)."""

    blocks: tuple[Block, ...] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        names = [b.name for b in self.blocks]
        if len(set(names)) != len(names):
            raise UserError(f"search space has duplicate names: {names}")
        if sum(isinstance(b, PartitionBlock) for b in self.blocks) > 1:
            raise UserError("search space: at most one partition block")

    @property
    def dim(self) -> int:
        return sum(b.dim for b in self.blocks)

    def _slices(self) -> Iterable[tuple[Block, slice]]:
        start = 0
        for block in self.blocks:
            yield block, slice(start, start + block.dim)
            start += block.dim

    @property
    def partition(self) -> PartitionBlock | None:
        return next((b for b in self.blocks if isinstance(b, PartitionBlock)), None)

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.partition.tasks if self.partition else ()

    def clip(self, u: np.ndarray) -> np.ndarray:
        """Clamp to the unit cube (every point of it is valid)."""
        return np.clip(np.asarray(u, dtype=float), 0.0, 1.0)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random point: partitions by the "restrict" draw, hyperparameters uniform in unit coordinates."""
        parts = [b.sample(rng) if isinstance(b, PartitionBlock) else rng.uniform(size=1) for b in self.blocks]
        return np.concatenate([np.zeros(0), *parts])

    def default(self) -> np.ndarray:
        return np.concatenate([np.zeros(0), *(np.atleast_1d(b.default_unit()) for b in self.blocks)])

    def to_params(self, u: np.ndarray) -> dict[str, Any]:
        """Unit vector -> {name: value}: raw [2,N,N] lists for a partition, numbers for hyperparameters."""
        u = np.asarray(u, dtype=float)
        if u.shape != (self.dim,):
            raise ValueError(f"expected a vector of length {self.dim}, got shape {u.shape}")
        return {b.name: b.to_value(u[s] if isinstance(b, PartitionBlock) else u[s][0]) for b, s in self._slices()}

    def to_vector(self, params: dict[str, Any]) -> np.ndarray:
        """Params dict -> unit vector (missing names: UserError)."""
        missing = [b.name for b in self.blocks if b.name not in params]
        if missing:
            raise UserError(f"params lack {missing} (space has {[b.name for b in self.blocks]})")
        return np.concatenate([np.zeros(0), *(np.atleast_1d(b.to_unit(params[b.name])) for b in self.blocks)])

    def penalty_mask(self) -> np.ndarray:
        """0/1 over coordinates: the forward diagonal (what the resource regularizer acts on)."""
        return self._per_block(lambda b: b.forward_diag_mask().astype(float), 0.0)

    def task_masks(self) -> np.ndarray:
        """[num_tasks, dim]: which coordinates belong to each task; hyperparameters belong to all."""
        n = len(self.tasks)
        cols = [b.task_masks() if isinstance(b, PartitionBlock) else np.ones((n, 1)) for b in self.blocks]
        return np.concatenate(cols, axis=1) if n else np.zeros((0, self.dim))

    def resource_per_task(self, params: dict[str, Any]) -> dict[str, float]:
        """f_i per task from the partition's forward diagonal ({} without a partition)."""
        block = self.partition
        return block.resource_per_task(params[block.name]) if block else {}

    def _per_block(self, fn, fill: float) -> np.ndarray:
        return np.concatenate([fn(b) if isinstance(b, PartitionBlock) else np.full(b.dim, fill) for b in self.blocks])

    def spec(self) -> list[dict]:
        """JSON description (stored with a search so a resume can check it is the same space)."""
        return [b.spec() for b in self.blocks]

    @classmethod
    def from_spec(cls, spec: Sequence[dict]) -> "Space":
        blocks = []
        for item in spec:
            item = dict(item)
            kind = item.pop("kind")
            blocks.append(PartitionBlock(**item) if kind == "partition" else Hyperparameter(**item))
        return cls(tuple(blocks))


def parse_hyperparameters(text: str) -> list[Hyperparameter]:
    """Parse es.txt-style lines "--name default low high linear|log 0|1" ('#' starts a comment)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 6:
            raise UserError(f"hyperparameter line {number}: expected 'name default low high scale is_int', "
                            f"got {line.strip()!r}")
        name, default, low, high, scale, is_int = fields
        integer = is_int not in ("0", "false", "False")
        cast = int if integer else float
        out.append(Hyperparameter(name.lstrip("-"), cast(float(low)), cast(float(high)), scale, integer,
                                  cast(float(default))))
    return out
