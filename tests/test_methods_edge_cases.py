"""Method edge cases of issue 14.8: small tasks neither zeroed nor contradicted; degenerate Gramians bounded."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from mtl.methods import SharedParts, build_method
from mtl.methods.cagrad import cagrad_weights
from mtl.methods.nash_mtl import nash_weights
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


# ---- Nash-MTL on degenerate Gramians (issue 14.8: alpha was 3e5-1e6, heads' gradients x1e6) --------
DEGENERATE = {
    "opposite": [[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]],
    "dependent": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, -1.0, 0.0]],
    "zero_task": [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]],
    "opposite_scaled": [[3e-4, 1e-4], [-6e-4, -2e-4]],
}


@pytest.mark.parametrize("name", DEGENERATE)
def test_nash_alpha_and_update_stay_bounded_on_degenerate_gramians(name):
    j = torch.tensor(DEGENERATE[name], dtype=torch.float64)
    gram = j @ j.T
    alpha, residual = nash_weights(gram)
    k, rms = len(alpha), float(gram.diagonal().mean().sqrt())
    assert bool(torch.isfinite(alpha).all()) and float(alpha.min()) > 0
    assert float(alpha.norm()) * rms <= k ** 0.5 * 10.0 + 1e-9  # was 3e5-1e6 times 1/||g||
    assert float((alpha @ j).norm()) <= k ** 0.5 + 1e-9  # ||J^T alpha||, like sqrt(K) at a solution
    ridge = rms ** 2 / 100.0  # the documented fallback: (G + lambda I) alpha = 1 / alpha
    torch.testing.assert_close((gram + ridge * torch.eye(k, dtype=torch.float64)) @ alpha, 1.0 / alpha,
                               rtol=1e-6, atol=0)
    assert residual > 0.5  # the logged residual says that no bargaining solution exists


@pytest.mark.parametrize("cos,ratio", [(0.0, 1.0), (-0.9, 1.0), (-0.98, 0.5), (0.5, 1e-3), (1.0, 0.5)])
def test_nash_keeps_the_exact_solution_where_it_exists(cos, ratio):
    j = _pair(cos, ratio, big=3.0)
    gram = j @ j.T
    alpha, residual = nash_weights(gram)
    torch.testing.assert_close(gram @ alpha, 1.0 / alpha, rtol=1e-8, atol=0)
    assert residual < 1e-6


def test_nash_mtl_heads_weighted_get_a_bounded_factor_on_opposite_gradients():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    heads = [nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(1.0))]
    x = torch.tensor([1.0, 0.5])
    losses = [heads[0] * (w @ x), -heads[1] * (w @ x)]  # shared gradients exactly opposite
    method = build_method("nash_mtl", 2, {"heads": "weighted"})
    info = method.backward(losses, SharedParts([w], heads))
    assert max(info.weights) * float(x.norm()) <= 10.0 + 1e-6
    assert float(w.grad.norm()) <= 1e-9  # no direction helps both tasks
    assert max(float(h.grad.abs()) for h in heads) <= 10.0 / float(x.norm()) * float(w.detach() @ x) + 1e-6  # was x3e5


# ---- degenerate inputs: no LinAlgError, no LAPACK noise on stderr (issue 14.2) ---------------------
NAN = float("nan")
ROWS = {
    "nan": [[NAN, 1.0, 0.0], [1.0, 2.0, 3.0]],
    "zero": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    "identical": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]],
    "one_zero": [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
    "opposite": [[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]],
    "tiny": [[1e-200, 0.0, 0.0], [0.0, 1e-200, 0.0]],
}


@pytest.mark.parametrize("name", ["mgda", "cagrad", "imtl_g", "aligned_mtl", "upgrad", "nash_mtl"])
@pytest.mark.parametrize("case", ROWS)
def test_gradient_methods_survive_degenerate_gradients_quietly(name, case, capfd):
    w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    rows = torch.tensor(ROWS[case], dtype=torch.float64)
    losses = [(w * rows[0]).sum(), (w * rows[1]).sum()]  # gradients = the rows (a singular Gramian)
    info = build_method(name, 2).backward(losses, SharedParts([w]))  # was LinAlgError for mgda/cagrad on NaN
    assert capfd.readouterr().err == ""  # was "** On entry to DLASCL parameter number 4 ..."
    finite = all(np.isfinite(ROWS[case]).flat) or name == "nash_mtl"  # Nash-MTL keeps its last finite alpha
    assert all(np.isfinite(info.weights)) == finite  # NaN weights only for NaN gradients (the loop skips)


def test_non_finite_gramians_give_nan_weights_without_calling_lapack():
    from mtl.methods.qp import min_norm_weights, undefined_weights

    gram = torch.tensor([[float("inf"), 1.0], [1.0, 2.0]], dtype=torch.float64)  # numpy lstsq never returned
    assert bool(undefined_weights(gram).isnan().all())
    assert bool(min_norm_weights(gram).isnan().all())
    assert undefined_weights(torch.eye(2, dtype=torch.float64)) is None
