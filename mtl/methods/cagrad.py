"""cagrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import METHODS, GradientOptions, Method, StepInfo, check_choice, check_positive
from mtl.methods.gramian import apply_update, cosine_diagnostics, task_gradients
from mtl.methods.qp import solve_qp, undefined_weights


@dataclass
class CAGradOptions(GradientOptions):
    c: float = field(default=0.4, metadata={"help": "radius of the ball around g_0 (official NYUv2: 0.4; LibMTL 0.5)"})
    rescale: int = field(default=1, metadata={"help": "divide the update by 0: 1, 1: 1+c^2 (official), 2: 1+c"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("c", self.c, allow_zero=True)
        check_choice("rescale", self.rescale, (0, 1, 2))


def cagrad_weights(gramian: torch.Tensor, c: float, rescale: int = 1, tol: float = 1e-11,
                   max_iter: int = 100) -> torch.Tensor:
    """Task weights of d = g_0 + (c ||g_0|| / ||g_w||) g_w, rescaled; g_0 = mean gradient.

    w = argmin over the simplex of g_w . g_0 + c ||g_0|| ||g_w||. Since sqrt(q) <= q / (2t) + t / 2
    with equality at t = sqrt(q), w = w(t*) where w(t) = argmin g_w . g_0 + (c ||g_0|| / 2t) ||g_w||^2
    (an exact QP) and t* is the fixed point of h(t) = ||g_w(t)||. Iterating t <- h(t) is
    majorize-minimize (monotone, linear rate); secant steps on h(t) - t make it superlinear.
    When the optimum has g_w = 0 (a zero-gradient task, or a Pareto-stationary point) the update
    is g_0, as the official code's (its lambda * g_w vanishes); g_w only counts as zero at float64
    round-off, so a small task's direction is kept however small its norm (issue 14.8).
    """
    k = gramian.shape[0]
    mean = torch.full((k,), 1.0 / k, dtype=torch.float64)
    if (undefined := undefined_weights(gramian)) is not None:
        return undefined
    if c == 0:
        return mean / _rescale(c, rescale)
    g = gramian.double() / max(float(gramian.diagonal().sum()), 1e-300)  # the solution is scale-free
    lin = g @ mean
    phi = c * float(mean @ lin) ** 0.5

    def solve(t: float) -> tuple[torch.Tensor, float]:
        w = solve_qp(g * (phi / t), lin, simplex=True)
        return w, float(w @ g @ w) ** 0.5

    w, t = mean, float(mean @ g @ mean) ** 0.5
    previous = None  # (t, h(t) - t) of the last evaluation, for the secant step
    for _ in range(max_iter):
        if t < _VANISHED:
            return mean / _rescale(c, rescale)
        w, h = solve(t)
        residual = h - t
        if abs(residual) <= tol * max(t, 1e-10):
            break
        step = h  # majorize-minimize
        if previous is not None and residual != previous[1]:
            secant = t - residual * (t - previous[0]) / (residual - previous[1])
            if secant > 0 and abs(secant - t) <= 2 * abs(residual) + abs(t - previous[0]):
                step = secant
        previous, t = (t, residual), step
    norm = float(w @ g @ w) ** 0.5
    if norm < _VANISHED:  # g_w = 0 (a zero-gradient task, or a Pareto-stationary point): d = g_0, as the official
        return mean / _rescale(c, rescale)
    return (mean + (phi / norm) * w) / _rescale(c, rescale)


# ||g_w|| on the trace-normalised Gramian below which g_w counts as exactly zero: float64 round-off only,
# so a task 1e-3 (or 1e-6) as large as another is never mistaken for zero and never zeroes the update.
_VANISHED = 1e-12


def _rescale(c: float, mode: int) -> float:
    return {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}[mode]


@METHODS.register("cagrad")
class CAGrad(Method):
    """d = g_0 + (c ||g_0|| / ||g_w||) g_w, the maximiser of min_k g_k . d within ||d - g_0|| <= c ||g_0||.

    Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
    NeurIPS 2021 (Cranial-XIX/CAGrad ``cagrad``). g_0 is the *mean* gradient, so c = 0 gives the
    mean; ``rescale`` 1 divides by 1 + c^2 as the official default. The official code and nash-mtl
    then multiply by K to match the loss sum; here that factor is left to the learning rate. The
    dual problem is solved on the Gramian with exact QPs (majorize-minimize + secant) instead of SLSQP.
    Heads unweighted.
    """

    Options = CAGradOptions

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        gramian = grads.gramian()
        weights = cagrad_weights(gramian, self.options.c, self.options.rescale)
        heads = weights if self.options.heads == "weighted" else torch.ones_like(weights)
        apply_update(losses, parts, grads, weights, heads)
        return StepInfo(weights.tolist(), source, self.options.heads, cosine_diagnostics(gramian))
