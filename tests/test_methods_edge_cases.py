"""Method edge cases of issue 14.8: small and zero-gradient tasks are neither zeroed nor contradicted."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtl.methods.cagrad import cagrad_weights
from mtl.methods.upgrad import upgrad_weights


def _pair(cos: float, ratio: float, big: float = 1.0) -> torch.Tensor:
    """Two gradients in the plane: norms big and big * ratio, cosine `cos`."""
    angle = float(np.arccos(cos))
    return torch.tensor([[big, 0.0], [big * ratio * np.cos(angle), big * ratio * np.sin(angle)]],
                        dtype=torch.float64)


def _official_cagrad(j: torch.Tensor, c: float) -> np.ndarray:
    """Cranial-XIX/CAGrad `cagrad` (rescale 1) written from its published code's equations, with SLSQP."""
    grads = j.numpy().T  # [d, K]
    gg = grads.T @ grads
    k = gg.shape[0]
    g0_norm = np.sqrt(gg.mean() + 1e-8)
    x0 = np.ones(k) / k
    cc = c * g0_norm + 1e-8

    def objective(x):
        return float(x @ gg @ x0 + cc * np.sqrt(x @ gg @ x + 1e-8))

    res = minimize(objective, x0, bounds=[(0, 1)] * k, constraints={"type": "eq", "fun": lambda x: 1 - x.sum()},
                   method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    gw = grads @ res.x
    return (grads.mean(1) + cc / (np.linalg.norm(gw) + 1e-8) * gw) / (1 + c * c)


def _cos(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("ratio", [1e-3, 1e-4, 1e-6])
def test_cagrad_keeps_a_small_task_like_the_official(ratio):
    j = _pair(0.915, ratio, big=1e4)
    ours = (cagrad_weights(j @ j.T, 0.4) @ j).numpy()
    official = _official_cagrad(j, 0.4)
    assert np.linalg.norm(ours) > 0.1 * np.linalg.norm(official)  # was exactly 0
    assert _cos(ours, official) > 0.999


def test_cagrad_with_a_zero_gradient_task_is_the_mean_as_the_official():
    j = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    ours = (cagrad_weights(j @ j.T, 0.4) @ j).numpy()
    np.testing.assert_allclose(ours, _official_cagrad(j, 0.4), rtol=1e-6, atol=1e-9)
    assert np.linalg.norm(ours) > 0


@pytest.mark.parametrize("ratio", [1 / 33, 1e-3])
def test_upgrad_never_contradicts_a_small_task(ratio):
    j = _pair(-0.5, ratio)
    update = upgrad_weights(j @ j.T) @ j
    assert _cos(update, j[1]) > -1e-3  # TorchJD's trace scaling: -0.031 at 1/33, -0.50 at 1/1000
    assert _cos(update, j[0]) > -1e-3
    trace = upgrad_weights(j @ j.T, reg_scale="trace") @ j  # the TorchJD behaviour stays available
    assert _cos(trace, j[1]) < -0.01
