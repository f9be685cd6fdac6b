"""Exact solver for the tiny quadratic programs of gradient combination (K x K, float64).

    minimise 0.5 x^T Q x + c^T x   subject to  x >= 0  (and sum(x) = 1 when ``simplex``)

Q symmetric positive semi-definite. A primal active-set method: each iteration solves the
equality-constrained problem on the free variables by least squares (so singular Q, e.g. parallel
task gradients, is fine), steps towards it until a bound blocks, and frees the bound with the most
negative multiplier once no step is possible. It terminates at a KKT point (exact up to rounding).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def solve_qp(quad: Tensor, lin: Tensor, simplex: bool = False, max_iter: int | None = None) -> Tensor:
    """argmin of 0.5 x^T quad x + lin^T x over x >= 0 (and the probability simplex if `simplex`).

    Args:
        quad: K x K symmetric PSD matrix.
        lin: K vector.
        simplex: add the constraint sum(x) = 1.
        max_iter: cap on active-set iterations (default 20 K + 50).

    Returns:
        The minimiser, float64 on the CPU. (Internally numpy: the problems are a few numbers.)
    """
    q = quad.detach().double().cpu().numpy()
    c = lin.detach().double().cpu().numpy()
    if not (np.isfinite(q).all() and np.isfinite(c).all()):
        return torch.full((len(c),), float("nan"), dtype=torch.float64)
    return torch.from_numpy(_active_set(q, c, simplex, max_iter or 20 * len(c) + 50))


def _active_set(q: np.ndarray, c: np.ndarray, simplex: bool, max_iter: int) -> np.ndarray:
    n = len(c)
    tol = 1e-13 * max(np.abs(q).max(initial=0.0), np.abs(c).max(initial=0.0), 1e-300)
    x = np.full(n, 1.0 / n) if simplex else np.zeros(n)
    bound = np.zeros(n, bool) if simplex else np.ones(n, bool)
    for _ in range(max_iter):
        free = np.flatnonzero(~bound)
        target, mult = _equality_qp(q, c, free, simplex)
        step = np.zeros(n)
        step[free] = target - x[free]
        if np.abs(step).max(initial=0.0) <= 1e-12 * max(1.0, np.abs(x).max()):
            grad = q @ x + c - mult
            if not bound.any() or grad[bound].min() >= -tol:
                break
            bound[np.flatnonzero(bound)[grad[bound].argmin()]] = False
            continue
        x, blocking = _step_to_bounds(x, step, free)
        if blocking is not None:
            bound[blocking] = True
            x[blocking] = 0.0
    x = np.clip(x, 0.0, None)
    return x / x.sum() if simplex else x


def _equality_qp(q: np.ndarray, c: np.ndarray, free: np.ndarray, simplex: bool) -> tuple[np.ndarray, float]:
    """Minimiser over the free variables (others 0) and the multiplier of sum(x) = 1 (0 if none)."""
    m = len(free)
    if m == 0:
        return np.zeros(0), 0.0
    sub = q[np.ix_(free, free)]
    rhs = -c[free]
    if simplex:
        kkt = np.zeros((m + 1, m + 1))
        kkt[:m, :m] = sub
        kkt[:m, m] = -1.0
        kkt[m, :m] = 1.0
        sol = np.linalg.lstsq(kkt, np.append(rhs, 1.0), rcond=None)[0]
        return sol[:m], float(sol[m])
    return np.linalg.lstsq(sub, rhs, rcond=None)[0], 0.0


def _step_to_bounds(x: np.ndarray, step: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Largest step length in (0, 1] keeping x >= 0, and the index that blocks (None if none)."""
    down = free[step[free] < 0]
    if len(down) == 0:
        return x + step, None
    ratios = -x[down] / step[down]
    i = int(ratios.argmin())
    if ratios[i] >= 1.0:
        return x + step, None
    return x + ratios[i] * step, int(down[i])


def undefined_weights(gramian: Tensor) -> Tensor | None:
    """NaN weights if the Gramian is not finite (NaN/inf gradients), else None.

    LAPACK raises LinAlgError, prints to stderr or never returns on such input; NaN weights keep
    the update non-finite, so the training loop's divergence guard skips the step.
    """
    if bool(torch.isfinite(gramian).all()):
        return None
    return torch.full((gramian.shape[0],), float("nan"), dtype=torch.float64)


def min_norm_weights(gramian: Tensor) -> Tensor:
    """MGDA: the weights on the simplex of the min-norm point of the convex hull of the gradients."""
    k = gramian.shape[0]
    return solve_qp(gramian, torch.zeros(k, dtype=torch.float64), simplex=True)
