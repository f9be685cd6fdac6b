"""RotoGrad against the paper's equations (one step, written out here), its init, learning rates and dtypes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl.methods import SharedParts, build_method

K = 2


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """Rows = one feature vector each (a sample, or a sample's position in a feature map)."""
    return t.movedim(1, -1).reshape(-1, t.shape[1])


def _rotate(z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bj...->bi...", r, z)


def _head_loss(u: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.einsum("bj...,j->b...", u, h)
    return ((out - y) ** 2).mean()


def _reference_step(z, heads, ys, bases, lr, optimizer):
    """One RotoGrad step from the paper (Javaloy & Valera 2022, Alg. 1) with the official loss reduction.

    R_k = B_k expm(S_k), S_k = L_k - L_k^T (L_k strictly lower, 0 at the start, so R_k = B_k);
    g'_k = dL_k / d(R_k z), g_k = R_k^T g'_k; v = mean_k g_k ||mean_j g_j|| / ||g_k||;
    rotation loss l_k = c sum_rows ||R_k v_r - g'_k,r||^2 with c = 1 for B x d features (the official
    sums over the batch) and 1/B for feature maps; dl/dR = 2c sum_r (R v_r - g'_r) v_r^T; at S = 0,
    dl/dS = B^T dl/dR; dl/dL = tril(dl/dS - dl/dS^T, -1). Representation update (RotoGrad, first
    step: all convergence ratios 1): sum_k (mean_j ||g_j|| / ||g_k||) g_k.
    """
    grads, rotated_grads, total = [], [], 0.0
    for k in range(K):
        u = _rotate(z.detach(), bases[k]).requires_grad_(True)
        g_rot, = torch.autograd.grad(_head_loss(u, heads[k].detach(), ys[k]), u)
        rotated_grads.append(g_rot)
        grads.append(_rotate(g_rot, bases[k].T))
    mean_norm = (sum(grads) / K).norm()
    v = sum(g * (mean_norm / g.norm()) for g in grads) / K
    c = 1.0 if z.dim() == 2 else 1.0 / z.shape[0]
    new_rotations = []
    for k in range(K):
        rows_v, rows_g = _channels_last(v), _channels_last(rotated_grads[k])
        residual = rows_v @ bases[k].T - rows_g
        total += c * float((residual ** 2).sum())
        d_s = bases[k].T @ (2 * c * residual.T @ rows_v)
        d_l = (d_s - d_s.T).tril(-1)
        step = d_l if optimizer == "sgd" else d_l / (d_l.abs() + 1e-8)  # Adam's first step: m/sqrt(v) = sign
        lower = -lr * step
        new_rotations.append(bases[k] @ torch.linalg.matrix_exp(lower - lower.T))
    norms = torch.stack([g.norm() for g in grads])
    update = sum((norms.mean() / norms[k]) * grads[k] for k in range(K))
    return torch.stack(new_rotations), update, total


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 2, 2)], ids=["vectors", "feature_maps"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_rotograd_step_matches_the_paper(shape, optimizer):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    heads = [nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64)) for _ in range(K)]
    ys = [torch.randn(shape[:1] + shape[2:], generator=g, dtype=torch.float64) for _ in range(K)]
    method = build_method("rotograd", K, {"optimizer": optimizer, "lr": 0.05, "seed": 3})
    losses = [_head_loss(method.adapt_representation(z, k), heads[k], ys[k]) for k in range(K)]
    bases = method.rotations().clone()
    info = method.backward(losses, SharedParts([z], heads, representation=[z]))
    rotations, update, rotation_loss = _reference_step(z, heads, ys, bases, 0.05, optimizer)
    torch.testing.assert_close(method.rotations(), rotations, rtol=0, atol=1e-12)
    torch.testing.assert_close(z.grad, update, rtol=1e-12, atol=1e-14)
    assert info.extras["rotation_loss"] == pytest.approx(rotation_loss, rel=1e-12)


def test_initial_rotations_are_random_like_the_official_or_the_identity():
    z = torch.randn(4, 5, requires_grad=True)
    first = build_method("rotograd", 3, {"seed": 1})
    first.adapt_representation(z, 0)
    r = first.rotations()
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(5).expand(3, 5, 5), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r.double()), torch.ones(3, dtype=torch.float64))
    assert float((r[0] - r[1]).abs().max()) > 0.1 and float((r[0] - torch.eye(5)).abs().max()) > 0.1
    again, other = build_method("rotograd", 3, {"seed": 1}), build_method("rotograd", 3, {"seed": 2})
    for m in (again, other):
        m.adapt_representation(z, 0)
    torch.testing.assert_close(again.rotations(), r)
    assert not torch.allclose(other.rotations(), r)
    identity = build_method("rotograd", 3, {"init": "identity"})
    identity.adapt_representation(z, 0)
    torch.testing.assert_close(identity.rotations(), torch.eye(5).expand(3, 5, 5))


def _one_step(name, options, dtype=torch.float32):
    torch.manual_seed(0)
    backbone = nn.Linear(3, 4).to(dtype)
    heads = nn.ModuleList([nn.Linear(4, 1), nn.Linear(4, 1)]).to(dtype)
    x, ys = torch.randn(8, 3, dtype=dtype), [torch.randn(8, 1, dtype=dtype), -torch.randn(8, 1, dtype=dtype)]
    method = build_method(name, 2, options)
    z = backbone(x)
    losses = [nn.functional.mse_loss(heads[k](method.adapt_representation(z, k)), ys[k]) for k in range(2)]
    method.backward(losses, SharedParts(list(backbone.parameters()), list(heads.parameters()), representation=[z]))
    return method, backbone


def test_gradnorm_logits_have_their_own_learning_rate():
    method, _ = _one_step("rotograd_norm", {"lr": 1e-3, "gradnorm_lr": 0.1})
    assert float(method.gn_logits.detach().abs().max()) == pytest.approx(0.1, rel=1e-3)  # Adam: one lr-sized step
    assert float(method.skew.detach().abs().max()) == pytest.approx(1e-3, rel=1e-3)
    assert float(method.skew.detach().triu().abs().max()) == 0.0  # only the lower triangle is a parameter


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_rotograd_works_with_any_float_dtype(dtype):
    method, backbone = _one_step("rotograd", {}, dtype)  # float64 was a dtype error in the matmul
    assert all(bool(torch.isfinite(p.grad).all()) and p.grad.dtype == dtype for p in backbone.parameters())
    assert bool(torch.isfinite(method.rotations()).all())


def test_a_checkpoint_of_the_full_skew_parametrisation_loads_to_the_same_rotations():
    method = build_method("rotograd", 2, {"rotation_size": 3})
    full = torch.randn(2, 3, 3) * 0.3
    state = {k: v for k, v in method.state_dict().items() if k != "base"}
    state["skew"] = full
    method.load_state_dict(state)
    torch.testing.assert_close(method.rotations(), torch.linalg.matrix_exp(full - full.transpose(1, 2)))
