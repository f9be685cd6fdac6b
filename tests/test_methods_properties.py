"""The defining property of each method, on small toy gradients (and the tiny QP solver)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from mtl.methods import SharedParts, build_method
from mtl.methods.aligned_mtl import aligned_mtl_weights
from mtl.methods.cagrad import cagrad_weights
from mtl.methods.gradnorm import gradnorm_weight_grad
from mtl.methods.imtl_g import imtl_g_weights
from mtl.methods.mgda import normalizers
from mtl.methods.nash_mtl import nash_weights
from mtl.methods.pcgrad import pcgrad_matrix
from mtl.methods.qp import min_norm_weights, solve_qp
from mtl.methods.rotograd import rotate, rotate_back
from mtl.methods.upgrad import upgrad_weights



def jacobian(k: int, d: int, seed: int = 0) -> torch.Tensor:
    """Random task gradients (rows) with a conflicting pair."""
    g = torch.Generator().manual_seed(seed)
    j = torch.randn(k, d, generator=g, dtype=torch.float64)
    j[0] = -0.6 * j[1] + 0.3 * j[0]
    return j


CASES = [(2, 5, 0), (3, 10, 1), (5, 20, 2), (4, 3, 3), (6, 50, 4)]


# ---- QP solver and MGDA ---------------------------------------------------------------------------
@pytest.mark.parametrize("k,d,seed", CASES)
def test_mgda_is_the_min_norm_point_and_satisfies_kkt(k, d, seed):
    j = jacobian(k, d, seed)
    gram = j @ j.T
    alpha = min_norm_weights(gram)
    value = float(alpha @ gram @ alpha)
    assert alpha.min() >= 0 and abs(float(alpha.sum()) - 1) < 1e-12
    # KKT on the simplex: (G alpha)_i >= alpha^T G alpha, with equality where alpha_i > 0
    slack = gram @ alpha - value
    assert slack.min() > -1e-10
    assert float((alpha * slack).abs().max()) < 1e-10
    # no point of a fine sample of the simplex is shorter
    samples = torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64)).sample((2000,))
    assert value <= float(((samples @ j).norm(dim=1) ** 2).min()) + 1e-12


def test_mgda_two_task_closed_form():
    j = jacobian(2, 6)
    g11, g12, g22 = float(j[0] @ j[0]), float(j[0] @ j[1]), float(j[1] @ j[1])
    gamma = (g22 - g12) / (g11 + g22 - 2 * g12)
    torch.testing.assert_close(min_norm_weights(j @ j.T), torch.tensor([gamma, 1 - gamma], dtype=torch.float64))


def test_mgda_normalizers_match_the_official_definitions():
    gram = torch.diag(torch.tensor([4.0, 9.0], dtype=torch.float64))
    losses = torch.tensor([2.0, 0.5], dtype=torch.float64)
    assert normalizers(gram, losses, "l2").tolist() == [2.0, 3.0]
    assert normalizers(gram, losses, "loss").tolist() == [2.0, 0.5]
    assert normalizers(gram, losses, "loss+").tolist() == [4.0, 1.5]
    assert normalizers(gram, losses, "none").tolist() == [1.0, 1.0]


@pytest.mark.parametrize("n,seed", [(2, 0), (4, 1), (7, 2)])
def test_nonnegative_qp_matches_brute_force_over_active_sets(n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    quad, lin = a @ a.T + 0.1 * torch.eye(n, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    best = math.inf
    for free in itertools.chain.from_iterable(itertools.combinations(range(n), r) for r in range(n + 1)):
        x = torch.zeros(n, dtype=torch.float64)
        if free:
            idx = list(free)
            x[idx] = torch.linalg.solve(quad[idx][:, idx], -lin[idx])
        if x.min() >= -1e-12:
            best = min(best, float(0.5 * x @ quad @ x + lin @ x))
    x = solve_qp(quad, lin)
    assert x.min() >= 0
    assert float(0.5 * x @ quad @ x + lin @ x) == pytest.approx(best, abs=1e-10)


def test_min_norm_handles_identical_and_zero_gradients():
    j = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    alpha = min_norm_weights(j @ j.T)
    assert float(alpha @ (j @ j.T) @ alpha) == pytest.approx(0.0, abs=1e-12)


# ---- PCGrad, CAGrad, IMTL-G, UPGrad, Nash-MTL, Aligned-MTL --------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_two_tasks_leaves_no_negative_inner_product(seed):
    j = jacobian(2, 8, seed)
    gram = j @ j.T
    assert gram[0, 1] < 0
    projected = pcgrad_matrix(gram, [[0, 1], [1, 0]]) @ j
    assert float(projected[0] @ j[1]) > -1e-12 and float(projected[1] @ j[0]) > -1e-12
    # closed form: g1 - (g1.g2 / |g2|^2) g2
    torch.testing.assert_close(projected[0], j[0] - (j[0] @ j[1]) / (j[1] @ j[1]) * j[1])


def test_pcgrad_leaves_non_conflicting_gradients_alone():
    j = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert torch.equal(pcgrad_matrix(j @ j.T, [[0, 1], [1, 0]]), torch.eye(2, dtype=torch.float64))


@pytest.mark.parametrize("k,d,seed", CASES)
def test_cagrad_with_c_zero_is_the_mean(k, d, seed):
    j = jacobian(k, d, seed)
    torch.testing.assert_close(cagrad_weights(j @ j.T, 0.0), torch.full((k,), 1.0 / k, dtype=torch.float64))


@pytest.mark.parametrize("k,d,seed", CASES[:3])
def test_cagrad_update_solves_the_constrained_max_min(k, d, seed):
    """d maximises min_i g_i.d within ||d - g0|| <= c||g0||: it lies on the ball and beats nearby points."""
    j, c = jacobian(k, d, seed), 0.5
    direction = cagrad_weights(j @ j.T, c, rescale=0) @ j
    g0 = j.mean(0)
    assert float((direction - g0).norm()) == pytest.approx(c * float(g0.norm()), rel=1e-6)
    worst = float((j @ direction).min())
    g = torch.Generator().manual_seed(seed)
    for _ in range(200):
        step = torch.randn(d, generator=g, dtype=torch.float64)
        other = g0 + (direction - g0 + 0.05 * step.norm() * step / step.norm())
        other = g0 + (other - g0) * (c * g0.norm() / (other - g0).norm())
        assert float((j @ other).min()) <= worst + 1e-9


@pytest.mark.parametrize("k,d,seed", CASES)
def test_imtl_g_projections_on_unit_gradients_are_equal(k, d, seed):
    j = jacobian(k, d, seed)
    w = imtl_g_weights(j @ j.T)
    projections = (j @ (w @ j)) / j.norm(dim=1)
    if k <= d:
        torch.testing.assert_close(projections, projections.mean().expand(k))
    assert float(w.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("k,d,seed", CASES)
def test_upgrad_update_conflicts_with_no_task(k, d, seed):
    j = jacobian(k, d, seed)
    update = upgrad_weights(j @ j.T) @ j
    assert float((j @ update).min()) > -1e-6 * float(j.norm()) ** 2


@pytest.mark.parametrize("k,d,seed", [c for c in CASES if c[0] <= c[1]])
def test_nash_weights_solve_the_bargaining_equation(k, d, seed):
    j = jacobian(k, d, seed)
    gram = j @ j.T
    alpha, _ = nash_weights(gram)
    assert alpha.min() > 0
    torch.testing.assert_close(gram @ alpha, 1.0 / alpha, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("mode", ["min", "median", "rmse"])
def test_aligned_mtl_makes_the_task_gradients_orthogonal_with_equal_norms(mode):
    j = jacobian(3, 10)
    gram = j @ j.T
    eigvals, eigvecs = torch.linalg.eigh(gram)
    balance = aligned_mtl_weights(gram, mode, "sum")
    # the aligned gradients J^T B (columns of B) have the Gramian s * I: B^T G B = s I
    basis = eigvecs @ torch.diag(eigvals.rsqrt()) @ eigvecs.T
    aligned_gram = basis.T @ gram @ basis
    torch.testing.assert_close(aligned_gram, torch.eye(3, dtype=torch.float64))
    s = {"min": eigvals.min(), "median": eigvals.median(), "rmse": eigvals.mean()}[mode]
    torch.testing.assert_close(balance, s.sqrt() * basis @ torch.ones(3, dtype=torch.float64))


# ---- loss weighting -------------------------------------------------------------------------------
def two_task_setup(seed: int = 0):
    torch.manual_seed(seed)
    shared, heads = nn.Linear(3, 4), nn.ModuleList([nn.Linear(4, 1), nn.Linear(4, 1)])
    x = torch.randn(16, 3)
    ys = [torch.randn(16, 1), 3 * torch.randn(16, 1)]

    def losses():
        z = torch.tanh(shared(x))
        return [nn.functional.mse_loss(heads[k](z), ys[k]) for k in range(2)]

    parts = SharedParts(list(shared.parameters()), list(heads.parameters()), last_shared=[shared.weight])
    return shared, heads, losses, parts


@pytest.mark.parametrize("form,factor", [("regression", 0.5), ("classification", 1.0)])
def test_uncertainty_gradient_formula(form, factor):
    shared, heads, losses, parts = two_task_setup()
    method = build_method("uncertainty", 2, {"form": form, "init": 0.3, "optimizer": "sgd", "lr": 0.1})
    values = losses()
    info = method.backward(values, parts)
    s = torch.tensor([0.3, 0.3])
    expected_grad = 0.5 - factor * torch.exp(-s) * torch.tensor([float(v.detach()) for v in values])
    torch.testing.assert_close(method.log_var.detach(), s - 0.1 * expected_grad)
    torch.testing.assert_close(torch.tensor(info.weights), factor * torch.exp(-s))
    # the model sees sum_k w_k L_k
    model_grad = shared.weight.grad.clone()
    shared.zero_grad()
    sum(w * v for w, v in zip(info.weights, losses())).backward()
    torch.testing.assert_close(model_grad, shared.weight.grad)


def test_gradnorm_one_step_weight_update():
    shared, heads, losses, parts = two_task_setup()
    method = build_method("gradnorm", 2, {"alpha": 1.5, "optimizer": "sgd", "lr": 0.1, "source": "last_shared"})
    values = losses()
    norms = torch.stack([torch.autograd.grad(v, shared.weight, retain_graph=True)[0].norm() for v in values])
    method.backward(values, parts)
    # first step: L(0) = L, so r = 1 and the target is the mean norm
    target = norms.mean()
    grad = torch.sign(norms - target) * norms
    w = torch.ones(2) - 0.1 * grad
    torch.testing.assert_close(method.task_weights.detach(), 2 * w / w.sum())
    # a later step: the weight gradient of L_grad with the loss ratios
    g, _ = gradnorm_weight_grad(torch.tensor([1.2, 0.8]), torch.tensor([2.0, 1.0]), torch.tensor([1.0, 4.0]),
                                torch.tensor([2.0, 2.0]), 1.0)
    # G = [2.4, 0.8], Gbar = 1.6, r = [0.5, 2] / 1.25 -> targets [0.64, 2.56]
    assert g.tolist() == [2.0, -1.0]


def test_dwa_weights_follow_the_loss_ratios_of_the_last_two_rounds():
    shared, heads, losses, parts = two_task_setup()
    method = build_method("dwa", 2, {"temperature": 2.0})
    history = []
    for _ in range(2):
        values = losses()
        history.append([float(v.detach()) for v in values])
        assert method.backward(values, parts).weights == [1.0, 1.0]
        method.end_round()
    rates = torch.tensor(history[1]) / torch.tensor(history[0])
    expected = 2 * torch.softmax(rates / 2.0, 0)
    torch.testing.assert_close(torch.tensor(method.backward(losses(), parts).weights), expected)


def test_famo_update_moves_weight_towards_the_slower_task():
    shared, heads, losses, parts = two_task_setup()
    method = build_method("famo", 2, {"lr": 0.1, "weight_decay": 0.0})
    before = losses()
    info = method.backward(before, parts)
    assert sum(info.weights) == pytest.approx(1.0)
    method.after_step([0.5 * before[0].detach(), 0.99 * before[1].detach()])  # task 0 fell much faster
    z = torch.softmax(method.logits.detach(), 0)
    assert z[1] > z[0]


def test_rlw_weights_are_a_seeded_random_point_of_the_simplex():
    _, _, losses, parts = two_task_setup()
    first = build_method("rlw", 2, {"seed": 3}).backward(losses(), parts).weights
    again = build_method("rlw", 2, {"seed": 3}).backward(losses(), parts).weights
    assert first == again and sum(first) == pytest.approx(1.0) and min(first) > 0


def test_graddrop_keeps_one_sign_per_unit_and_is_exact_for_agreeing_tasks():
    from mtl.methods.graddrop import graddrop_combine

    agree = torch.tensor([[1.0, -2.0], [3.0, -1.0]])
    torch.testing.assert_close(graddrop_combine(agree, agree, torch.rand(2), 0.0), agree.sum(0))
    mixed = torch.tensor([[1.0, -2.0, 4.0], [-3.0, 1.0, -1.0]])
    out = graddrop_combine(mixed, mixed, torch.tensor([0.3, 0.5, 0.7]), 0.0)
    for i in range(3):
        assert out[i] in (mixed[:, i].clamp_min(0).sum(), mixed[:, i].clamp_max(0).sum())
    torch.testing.assert_close(graddrop_combine(mixed, mixed, torch.rand(3), 1.0), mixed.sum(0))


# ---- RotoGrad ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rotate_only", "rotograd", "rotograd_norm"])
def test_rotograd_rotations_stay_orthogonal_and_align_the_gradients(name):
    torch.manual_seed(0)
    backbone, heads = nn.Sequential(nn.Linear(3, 5), nn.Tanh()), nn.ModuleList([nn.Linear(5, 1), nn.Linear(5, 1)])
    x, ys = torch.randn(32, 3), [torch.randn(32, 1), -torch.randn(32, 1)]
    method = build_method(name, 2, {"lr": 0.05})
    optimizer = torch.optim.SGD(list(backbone.parameters()) + list(heads.parameters()), lr=0.01)
    initial = None
    for _ in range(15):
        z = backbone(x)
        losses = [nn.functional.mse_loss(heads[k](method.adapt_representation(z, k)), ys[k]) for k in range(2)]
        initial = method.rotations().clone() if initial is None else initial
        optimizer.zero_grad()
        method.backward(losses, SharedParts(list(backbone.parameters()), list(heads.parameters()),
                                            representation=[z]))
        optimizer.step()
    rotations = method.rotations()
    eye = torch.eye(5).expand(2, 5, 5)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), eye, atol=1e-5, rtol=0)
    assert float((rotations - initial).abs().max()) > 1e-3  # they did move
    assert method.rotations() is rotations  # cached until the parameters change


def test_rotate_and_rotate_back_are_inverse_and_touch_only_the_first_features():
    rotation = torch.linalg.matrix_exp(torch.tensor([[0.0, 0.7], [-0.7, 0.0]]))
    z = torch.randn(4, 3, 2, 2)
    rotated = rotate(z, rotation)
    torch.testing.assert_close(rotated[:, 2:], z[:, 2:])
    torch.testing.assert_close(rotate_back(rotated, rotation), z)


def test_rotograd_cooperative_mode_lets_task_losses_reach_the_rotations():
    skews = []
    for coop_after in (-1, 1):
        torch.manual_seed(0)
        backbone, heads = nn.Linear(3, 4), nn.ModuleList([nn.Linear(4, 1), nn.Linear(4, 1)])
        x, ys = torch.randn(8, 3), [torch.randn(8, 1), torch.randn(8, 1)]
        method = build_method("rotate_only", 2, {"coop_after": coop_after, "optimizer": "sgd", "lr": 0.1})
        for step in range(2):
            z = backbone(x)
            rotated = [method.adapt_representation(z, k) for k in range(2)]
            losses = [nn.functional.mse_loss(heads[k](rotated[k]), ys[k]) for k in range(2)]
            method.backward(losses, SharedParts(list(backbone.parameters()), list(heads.parameters()),
                                                representation=[z]))
        skews.append(method.skew.detach().clone())
    assert not torch.allclose(skews[0], skews[1])  # the task losses moved the cooperative rotations
