"""Every model kind implements the MultiTaskModel contract (mtl/models/contract.py) the steps rely on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl.methods.uncertainty import uncertainty_loss
from mtl.models import build_model
from mtl.models.contract import MultiTaskModel, update_guard
from mtl.models.graph import GraphModel, Node

TASKS = [("a", 3), ("b", 4)]


def _graph() -> GraphModel:
    torch.manual_seed(0)
    return GraphModel([Node("body", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())),
                       Node("a", nn.Linear(4, 3), "body", nn.CrossEntropyLoss()),
                       Node("b", nn.Linear(4, 4), "body", nn.CrossEntropyLoss(), "auto")],
                      example_input=torch.zeros(2, 3, 8, 8))


def _model(kind: str):
    torch.manual_seed(0)
    if kind == "graph":
        return _graph()
    options = {"partition": "independent", "partition_layers": "last_stage"} if kind == "partitioned_resnet26" else {}
    return build_model(kind, TASKS, width=0.125, **options)


KINDS = ["resnet26", "partitioned_resnet26", "graph"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_model_kind_implements_the_contract(kind):
    model = _model(kind)
    assert isinstance(model, MultiTaskModel)
    assert model.task_names == ["a", "b"]
    shared = {id(p) for p in model.shared_parameters()}
    own = {id(p) for p in model.task_parameters("a")}
    assert shared and own and not shared & own
    assert {id(p) for p in model.last_shared_parameters()} <= shared
    assert shared | own <= {id(p) for p in model.parameters_for("a")}
    assert isinstance(model.zero_grads_to_none, bool)
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    logits, representation = model.forward_with_representation(x, "b")
    assert torch.allclose(logits, model(x, "b"), atol=1e-5) and logits.shape == (2, 4) and representation
    loss = torch.tensor(2.0)
    assert model.task_loss("a", loss) is loss


@pytest.mark.parametrize("kind", KINDS)
def test_the_adapter_transforms_what_the_task_reads_not_the_recorded_representation(kind):
    model = _model(kind).eval()
    x = torch.randn(2, 3, 8, 8)
    plain, before = model.forward_with_representation(x, "a")
    doubled, recorded = model.forward_with_representation(x, "a", lambda z, k: 2 * z if k == 0 else z)
    assert all(torch.equal(p, r) for p, r in zip(before, recorded))
    assert not torch.allclose(plain, doubled)


def test_a_graph_models_auto_weight_is_the_uncertainty_formula():
    model = _graph()
    with torch.no_grad():
        model.log_vars["b"].fill_(0.3)
    loss = torch.tensor(1.7)
    assert torch.equal(model.task_loss("b", loss), uncertainty_loss(loss, model.log_vars["b"]))
    assert torch.allclose(model.task_loss("b", loss), 0.5 * torch.exp(torch.tensor(-0.3)) * loss + 0.15)


@pytest.mark.parametrize("kind", KINDS)
def test_the_guard_restores_only_what_no_given_task_may_update(kind):
    model = _model(kind)
    weights = {id(w): w for task in ("a", "b") for w, _ in model.update_masks(task)}
    assert bool(weights) == (kind == "partitioned_resnet26")  # only a partition restricts updates
    for tasks in (["a"], ["a", "b"]):
        before = {key: w.detach().clone() for key, w in weights.items()}
        with model.guard_update(*tasks):
            with torch.no_grad():
                for w in weights.values():
                    w.add_(1.0)
        for key, w in weights.items():
            allowed = torch.zeros_like(w, dtype=torch.bool)
            for task in tasks:
                allowed |= dict((id(v), k) for v, k in model.update_masks(task)).get(key, torch.ones_like(allowed))
            assert torch.equal(w.detach() != before[key], allowed.expand_as(w))
            assert len(tasks) == 2 or not bool(allowed.all())
    with update_guard(model, ["a"]):  # the function every model's guard_update is
        pass
