"""Seeded sampling of binary channel masks that match a partition's pairwise statistics.

For a layer of C channels, task i gets d_i = round(f_i C) channels (at least one) and each pair
should share O_ij = round(F_ij C). Pairwise targets need not be jointly realisable for N >= 3, so
this is an approximation: a sequential draw in the manner of the original (each channel weighted so
that the expected overlap with every earlier task equals its target), then a swap-based local search
that lowers the squared overlap error; the best of a few restarts is kept. Backward masks are sampled
the same way inside the forward masks. Same fractions + C + seed -> same masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_RESTARTS = 4
_MAX_SWAPS = 4096


@dataclass
class MaskSet:
    """Masks of one layer width and how well they match their targets.

    Attributes:
        forward: bool [N, C], channels each task uses.
        backward: bool [N, C], channels each task's gradient may update (subset of forward).
        target_fwd, target_bwd: [N, N] target counts (channels; diagonal = per-task counts).
    """

    forward: np.ndarray
    backward: np.ndarray
    target_fwd: np.ndarray
    target_bwd: np.ndarray

    @property
    def channels(self) -> int:
        return self.forward.shape[1]

    def report(self) -> dict:
        """Achieved vs target overlaps (as fractions of C) and the mean/max errors in channels."""
        out = {"channels": self.channels}
        for name, masks, target in (("forward", self.forward, self.target_fwd),
                                    ("backward", self.backward, self.target_bwd)):
            achieved = overlaps(masks)
            err = np.abs(achieved - target)[np.triu_indices(len(target), 1)]
            out[name] = {
                "target": np.round(target / self.channels, 4).tolist(),
                "achieved": np.round(achieved / self.channels, 4).tolist(),
                "mean_abs_error_channels": float(err.mean()) if err.size else 0.0,
                "max_abs_error_channels": float(err.max()) if err.size else 0.0,
            }
        return out


def overlaps(masks: np.ndarray) -> np.ndarray:
    """[N, N] integer matrix of |M_i & M_j| (diagonal = |M_i|)."""
    m = masks.astype(np.int64)
    return m @ m.T


def target_counts(fractions: np.ndarray, channels: int, minimum: int = 0,
                  caps: np.ndarray | None = None) -> np.ndarray:
    """Round a fraction matrix to channel counts, clipped to what sets of those sizes allow.

    Args:
        fractions: [N, N] (diagonal = set sizes, off-diagonal = pairwise overlaps) as fractions of C.
        channels: C.
        minimum: smallest set size (forward masks use 1 so no task loses a layer entirely).
        caps: optional [N] upper bounds on set sizes (backward: the forward counts).

    Returns:
        Integer [N, N] targets with max(0, d_i + d_j - C) <= O_ij <= min(d_i, d_j).
    """
    counts = np.rint(np.asarray(fractions) * channels).astype(np.int64)
    d = np.clip(np.diag(counts), minimum, channels)
    if caps is not None:
        d = np.minimum(d, caps)
    lo = np.maximum(0, d[:, None] + d[None, :] - channels)
    out = np.clip(counts, lo, np.minimum(d[:, None], d[None, :]))
    np.fill_diagonal(out, d)
    return out


def sample_masks(fwd: np.ndarray, bwd: np.ndarray, channels: int, seed: int | list[int] = 0) -> MaskSet:
    """Forward and backward masks for one layer width.

    Args:
        fwd, bwd: [N, N] fraction matrices from `mtl.meta.partition.to_fractions`.
        channels: C, the layer's channel count.
        seed: int or int list for `numpy.random.default_rng`.

    Returns:
        The masks with their targets (see `MaskSet.report`).
    """
    rng = np.random.default_rng(seed)
    t_fwd = target_counts(fwd, channels, minimum=1)
    forward = _solve(np.ones((len(t_fwd), channels), bool), t_fwd, rng)
    t_bwd = backward_targets(bwd, forward)
    backward = _solve(forward, t_bwd, rng)
    return MaskSet(forward, backward, t_fwd, t_bwd)


def mask_set(fwd: np.ndarray, bwd: np.ndarray, forward: np.ndarray, backward: np.ndarray) -> MaskSet:
    """A MaskSet for existing masks (e.g. loaded from a checkpoint), with targets recomputed."""
    t_fwd = target_counts(fwd, forward.shape[1], minimum=1)
    return MaskSet(forward, backward, t_fwd, backward_targets(bwd, forward))


def backward_targets(bwd: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Backward target counts: within each task's forward set and the forward overlaps achieved."""
    t_bwd = target_counts(bwd, forward.shape[1], caps=forward.sum(1))
    return np.minimum(t_bwd, overlaps(forward))


def _solve(allowed: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Best of a few restarts of (sequential draw + swap search) for sets inside `allowed`."""
    best, best_err = None, np.inf
    for _ in range(_RESTARTS):
        masks = _local_search(_sequential_draw(allowed, target, rng), allowed, target)
        err = _error(masks, target)
        if err < best_err:
            best, best_err = masks, err
        if best_err == 0:
            break
    return best


def _error(masks: np.ndarray, target: np.ndarray) -> float:
    diff = overlaps(masks) - target
    return float((np.triu(diff, 1) ** 2).sum())


def _sequential_draw(allowed: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each task in turn draws its channels, weighted so expected overlaps with earlier tasks match."""
    n, c = allowed.shape
    masks = np.zeros((n, c), bool)
    for t in range(n):
        d = min(int(target[t, t]), int(allowed[t].sum()))
        weight = allowed[t].astype(np.float64)
        for s in range(t):
            inside = masks[s] & allowed[t]
            n_in, n_out = inside.sum(), (allowed[t] & ~masks[s]).sum()
            p_in = target[s, t] / max(n_in, 1)
            p_out = (d - target[s, t]) / max(n_out, 1)
            weight *= np.where(inside, p_in, p_out)
        weight = np.where(allowed[t], weight + 1e-9, 0.0)
        chosen = rng.choice(c, size=d, replace=False, p=weight / weight.sum())
        masks[t, chosen] = True
    return masks


def _local_search(masks: np.ndarray, allowed: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Greedy swaps (drop channel a, take channel b) while some swap lowers the squared error."""
    n = len(masks)
    if n < 2:
        return masks
    masks = masks.copy()
    for _ in range(_MAX_SWAPS):
        improved = False
        for t in range(n):
            improved |= _best_swap(masks, allowed, target, t)
        if not improved:
            break
    return masks


def _best_swap(masks: np.ndarray, allowed: np.ndarray, target: np.ndarray, t: int) -> bool:
    """Apply the single best improving swap for task t; False when none improves."""
    others = np.delete(np.arange(len(masks)), t)
    inside = np.flatnonzero(masks[t])
    outside = np.flatnonzero(allowed[t] & ~masks[t])
    if inside.size == 0 or outside.size == 0:
        return False
    member = masks[others].astype(np.float64)  # [N-1, C]
    resid = member @ masks[t] - target[t, others]  # achieved - target per other task
    a, b = member[:, inside], member[:, outside]
    # Squared-error change of swapping a -> b: sum_u (r_u + b_u - a_u)^2 - r_u^2, with 0/1 entries.
    delta = ((1 - 2 * resid) @ a)[:, None] + ((1 + 2 * resid) @ b)[None, :] - 2 * (a.T @ b)
    i, j = np.unravel_index(np.argmin(delta), delta.shape)
    if delta[i, j] >= -1e-9:
        return False
    masks[t, inside[i]], masks[t, outside[j]] = False, True
    return True
