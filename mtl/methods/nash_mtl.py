"""nash_mtl: multi-task learning as a bargaining game (Navon et al., ICML 2022)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mtl.methods.base import METHODS, GradientOptions, Method, StepInfo, check_positive
from mtl.methods.gramian import apply_update, cosine_diagnostics, task_gradients
from mtl.methods.qp import undefined_weights


@dataclass
class NashMTLOptions(GradientOptions):
    heads: str = field(default="weighted", metadata={
        "help": "official code weights the raw losses by alpha, so heads are 'weighted'; or 'unweighted'"})
    max_norm: float = field(default=1.0, metadata={"help": "clip ||J^T alpha|| to this (0 = no clipping)"})
    update_weights_every: int = field(default=1, metadata={"help": "solve every N steps, reuse alpha between"})
    optim_niter: int = field(default=20, metadata={"help": "max Newton iterations per solve"})
    max_alpha: float = field(default=10.0, metadata={
        "help": "bound on alpha_k * ||g_k|| (1 = orthogonal gradients); beyond it, or without a solution "
                "(opposite/dependent gradients), alpha is ridge-regularised"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("max_norm", self.max_norm, allow_zero=True)
        check_positive("update_weights_every", self.update_weights_every)
        check_positive("optim_niter", self.optim_niter)
        check_positive("max_alpha", self.max_alpha)


def nash_weights(gramian: torch.Tensor, start: torch.Tensor | None = None, max_iter: int = 20,
                 max_alpha: float = 10.0) -> tuple[torch.Tensor, float]:
    """alpha > 0 with G alpha = 1 / alpha (elementwise), bounded, and its residual.

    The solution minimises the strictly convex 0.5 a^T G a - sum log a, found by damped Newton steps
    on the Frobenius-normalised G (solution rescaled by 1/sqrt(||G||_F)); the official code and
    TorchJD reach the same point by up to 20 sequential convex (cvxpy/ECOS) solves. With opposite or
    dependent gradients (or a zero-gradient task) no solution exists and alpha grows without bound
    (3e5-1e6 after 20 steps). So the exact solution is kept only when it exists (scale-free residual
    max_k |a_k (G a)_k - 1| <= 1e-6) and is bounded (a_k ||g_k|| <= max_alpha; 1 for orthogonal
    gradients, 10 for a pair at cos -0.99); otherwise alpha solves the ridge-regularised
    (G + lambda I) a = 1 / a with lambda = mean_k ||g_k||^2 / max_alpha^2: Nash-MTL on gradients that
    each keep a private direction, always solvable, with ||alpha|| <= sqrt(K) max_alpha / rms ||g_k||.

    Returns:
        alpha (float64) and the scale-free residual of the unregularised equation at alpha.
    """
    if (undefined := undefined_weights(gramian)) is not None:
        return undefined, float("nan")
    g = gramian.double()
    scale = float(torch.linalg.norm(g))
    ones = torch.ones(g.shape[0], dtype=torch.float64)
    if not scale > 0:  # no gradient at all: nothing to bargain over
        return ones, 0.0
    g = g / scale
    a = ones if start is None else start.double() * scale ** 0.5
    a = _newton(g, a, max_iter)
    if _residual(g, a) > 1e-6 or float((a * g.diagonal().clamp_min(0).sqrt()).max()) > max_alpha:
        ridge = float(g.diagonal().mean()) / max_alpha ** 2 + 1e-12
        a = _newton(g + ridge * torch.eye(len(a), dtype=g.dtype), ones, max_iter)
    return a / scale ** 0.5, _residual(g, a)


def _residual(g: torch.Tensor, a: torch.Tensor) -> float:
    """max_k |a_k (G a)_k - 1|: 0 at the Nash solution, 1 where a task gains nothing (scale-free)."""
    return float((a * (g @ a) - 1.0).abs().max())


def _newton(g: torch.Tensor, a: torch.Tensor, max_iter: int, tol: float = 1e-10) -> torch.Tensor:
    """Damped Newton steps on 0.5 a^T G a - sum log a from `a`."""
    for _ in range(max_iter):
        grad = g @ a - 1.0 / a
        if float(grad.norm()) < tol:
            break
        step = torch.linalg.solve(g + torch.diag(1.0 / a ** 2), -grad)
        a = _damped(g, a, step)
    return a


def _damped(g: torch.Tensor, a: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Backtracking (Armijo) on f(a) = 0.5 a^T G a - sum log a, keeping a > 0."""
    def f(x):
        return 0.5 * float(x @ g @ x) - float(x.log().sum())
    length, base = 1.0, f(a)
    slope = float((g @ a - 1.0 / a) @ step)
    while length > 1e-10:
        trial = a + length * step
        if bool((trial > 0).all()) and f(trial) <= base + 1e-4 * length * slope:
            return trial
        length *= 0.5
    return a


@METHODS.register("nash_mtl")
class NashMTL(Method):
    """Weights alpha solving G alpha = 1/alpha (the Nash bargaining solution), then ||J^T alpha|| clipped.

    Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022 (AvivNavon/nash-mtl). The
    weights are neither summed to 1 nor to K; the official code weights the raw losses by alpha
    (heads weighted, the default here) and clips the shared gradient norm to ``max_norm``; here the
    clipping scales alpha on the shared part by max_norm / ||J^T alpha|| measured on the gradient
    source (as TorchJD). Where the bargaining equation has no bounded solution (opposite or
    dependent gradients) alpha is regularised (``max_alpha``, see ``nash_weights``) and the logged
    residual (scale-free) is then near 1. The previous alpha warm-starts the next solve and is reused for
    ``update_weights_every`` steps; it is checkpointed.
    """

    Options = NashMTLOptions

    def __init__(self, num_tasks, options=None):
        super().__init__(num_tasks, options)
        self.register_buffer("alpha", torch.ones(num_tasks, dtype=torch.float64))

    def _backward(self, losses, parts, source):
        grads, _ = task_gradients(losses, parts, source)
        gramian = grads.gramian()
        extras = cosine_diagnostics(gramian)
        if self.step_count % self.options.update_weights_every == 0:
            alpha, extras["residual"] = nash_weights(gramian, self.alpha.cpu(), self.options.optim_niter,
                                                     self.options.max_alpha)
            if bool(torch.isfinite(alpha).all()):
                self.alpha.copy_(alpha)
        alpha = self.alpha.cpu()
        weights = alpha.clone()
        norm = float(alpha @ gramian @ alpha) ** 0.5
        if self.options.max_norm > 0 and norm > self.options.max_norm:
            weights = weights * (self.options.max_norm / norm)
        heads = alpha if self.options.heads == "weighted" else torch.ones_like(alpha)
        apply_update(losses, parts, grads, weights, heads)
        return StepInfo(weights.tolist(), source, self.options.heads, extras)
