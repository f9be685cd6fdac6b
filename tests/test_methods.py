"""Every registered MTL method on a tiny 2-layer toy model: trains, logs, resumes exactly."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from mtl.errors import UserError
from mtl.methods import METHODS, SharedParts, build_method

K = 3
OPTIONS = {"dwa": {"window": 2}, "rotograd": {"burn_in": 2}, "rotograd_norm": {"burn_in": 2}}


class Toy(nn.Module):
    """Shared Linear+Tanh -> representation z -> one Linear head per task."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.shared = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(K))

    def losses(self, method, x, ys):
        z = self.shared(x)
        self.z = z
        return [nn.functional.mse_loss(self.heads[k](method.adapt_representation(z, k)), ys[k])
                for k in range(K)]

    def parts(self, source="shared"):
        return SharedParts(list(self.shared.parameters()), list(self.heads.parameters()), source,
                           list(self.shared[0].parameters()), [self.z])



def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=g)
    ys = [x @ torch.randn(4, 1, generator=g) + 0.5 * k for k in range(K)]
    return x, ys


# The methods that combine every task's gradient (naive steps one task at a time with that task's own
# optimizer, through the train job's NaiveSteps: tests/test_train_methods.py and test_models_resnet.py).
COMBINED = [name for name in METHODS.available() if not METHODS.get(name).uses_task_optimizers]


def optimizers(model, method):
    return torch.optim.SGD(model.parameters(), lr=0.05)


def train_step(model, method, opt, x, ys, source="shared"):
    """One step as the training loop does it; returns (raw losses, StepInfo)."""
    losses = model.losses(method, x, ys)
    opt.zero_grad(set_to_none=True)
    info = method.backward(losses, model.parts(source))
    opt.step()
    if method.needs_losses_after_step:
        with torch.no_grad():
            method.after_step(model.losses(method, x, ys))
    return [float(v.detach()) for v in losses], info


def grads(model):
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", COMBINED)
def test_method_trains_and_reports(name):
    model, method = Toy(), build_method(name, K, OPTIONS.get(name))
    opt = optimizers(model, method)
    x, ys = data()
    first, info = train_step(model, method, opt, x, ys)
    for _ in range(12):
        last, info = train_step(model, method, opt, x, ys)
    assert sum(last) < sum(first)
    assert len(info.weights) == K and all(torch.isfinite(torch.tensor(info.weights)))
    assert info.heads in ("weighted", "unweighted") and info.source in ("shared", "representation")
    assert all(isinstance(v, float) for v in info.as_log(["a", "b", "c"]).values())


@pytest.mark.parametrize("name", COMBINED)
def test_state_dict_round_trip_gives_identical_next_step(name):
    x, ys = data()
    model, method = Toy(), build_method(name, K, OPTIONS.get(name))
    opt = optimizers(model, method)
    for _ in range(3):
        train_step(model, method, opt, x, ys)
    method.end_round()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "method": method.state_dict(),
                "opt": [o.state_dict() for o in opt] if isinstance(opt, list) else opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed, fresh = Toy(seed=5), build_method(name, K, OPTIONS.get(name))
    resumed.load_state_dict(saved["model"])
    fresh.load_state_dict(saved["method"])
    resumed_opt = optimizers(resumed, fresh)
    if isinstance(opt, list):
        for o, s in zip(resumed_opt, saved["opt"]):
            o.load_state_dict(s)
    else:
        resumed_opt.load_state_dict(saved["opt"])

    for _ in range(2):
        _, info_a = train_step(model, method, opt, x, ys)
        _, info_b = train_step(resumed, fresh, resumed_opt, x, ys)
        assert info_a.weights == info_b.weights
        for a, b in zip(model.parameters(), resumed.parameters()):
            assert torch.equal(a, b)


GRADIENT_METHODS = ["mgda", "pcgrad", "cagrad", "imtl_g", "nash_mtl", "upgrad", "aligned_mtl", "gradnorm"]


@pytest.mark.parametrize("source", ["last_shared", "representation"])
@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_accept_every_source(name, source):
    model, method = Toy(), build_method(name, K)
    opt = optimizers(model, method)
    x, ys = data()
    _, info = train_step(model, method, opt, x, ys, source)
    assert info.source == source
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_source_option_overrides_the_model_and_unsupported_source_is_a_user_error():
    model, x, ys = Toy(), *data()
    method = build_method("mgda", K, {"source": "representation"})
    info = method.backward(model.losses(method, x, ys), model.parts("shared"))
    assert info.source == "representation"
    graddrop = build_method("graddrop", K)
    with pytest.raises(UserError, match="last_shared"):
        graddrop.backward(model.losses(graddrop, x, ys), model.parts("last_shared"))
    no_rep = SharedParts(list(model.shared.parameters()), source="representation")
    with pytest.raises(UserError, match="representation"):
        method.backward(model.losses(method, x, ys), no_rep)


def test_build_method_errors_name_the_problem():
    with pytest.raises(UserError, match="did you mean 'pcgrad'"):
        build_method("pcgard", 2)
    with pytest.raises(UserError, match="did you mean 'normalize'"):
        build_method("mgda", 2, {"normalise": "l2"})
    with pytest.raises(UserError, match="normalize"):
        build_method("mgda", 2, {"normalize": "l3"})
    with pytest.raises(UserError, match="not a valid float"):  # the one coercer's wording
        build_method("cagrad", 2, {"c": "big"})
    assert build_method("cagrad", 2, {"c": "0.5"}).options.c == 0.5  # strings from the command line
    assert build_method("mgda_ub", 2).options.source == "representation"


def test_options_dataclasses_document_every_field():
    import dataclasses

    for name in METHODS.available():
        for f in dataclasses.fields(METHODS.get(name).Options):
            assert f.metadata.get("help"), f"{name}.{f.name} has no help"


def test_weighted_heads_match_the_backward_of_the_weighted_loss():
    """J^T w on the shared params (no extra backward) equals backward(sum_k w_k L_k)."""
    x, ys = data()
    model, method = Toy(), build_method("mgda", K, {"heads": "weighted"})
    info = method.backward(model.losses(method, x, ys), model.parts())
    ours = grads(model)
    model.zero_grad(set_to_none=True)
    losses = model.losses(method, x, ys)
    sum(w * loss for w, loss in zip(info.weights, losses)).backward()
    for a, b in zip(ours, grads(model)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_separate_inputs_free_each_task_graph_and_give_the_same_update():
    x, ys = data()
    results = []
    for separate in (False, True):
        model, method = Toy(), build_method("upgrad", K)
        losses = [nn.functional.mse_loss(model.heads[k](model.shared(x[8 * k:8 * k + 8])), ys[k][8 * k:8 * k + 8])
                  for k in range(K)]
        parts = SharedParts(list(model.shared.parameters()), list(model.heads.parameters()),
                            separate_inputs=separate)
        method.backward(losses, parts)
        results.append(grads(model))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_naive_refuses_backward():
    x, ys = data()
    model, method = Toy(), build_method("naive", K)
    assert method.uses_task_optimizers
    with pytest.raises(UserError, match="NaiveSteps"):
        method.backward(model.losses(method, x, ys), model.parts())


def test_backward_accumulates_like_tensor_backward():
    x, ys = data()
    model, method = Toy(), build_method("pcgrad", K)
    method.backward(model.losses(method, x, ys), model.parts())
    once = grads(model)
    method = build_method("pcgrad", K)
    method.backward(model.losses(method, x, ys), model.parts())
    for a, b in zip(once, grads(model)):
        torch.testing.assert_close(2 * a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", COMBINED)
def test_methods_follow_the_model_to_cuda_and_resume_on_cpu(name):
    x, ys = data()
    model, method = Toy().cuda(), build_method(name, K, OPTIONS.get(name))
    opt = optimizers(model, method)
    for _ in range(3):
        _, info = train_step(model, method, opt, x.cuda(), [y.cuda() for y in ys])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    fresh = build_method(name, K, OPTIONS.get(name))
    fresh.load_state_dict(torch.load(buffer, weights_only=True, map_location="cpu"))
    model.cpu()
    train_step(model, fresh, optimizers(model, fresh), x, ys)
