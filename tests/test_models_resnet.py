"""ResNet-26: shapes, parameter counts (§6.3), freezing, init, registry."""

import math

import pytest
import torch
from torch import nn

from mtl.data.domains import DECATHLON
from mtl.errors import UserError
from mtl.models import MODELS, build_model
from mtl.models.resnet import ResNet26

TASKS = [("a", 5), ("b", 3)]



def _conv_weights(module):
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def test_conv_weight_counts_match_reference():
    model = ResNet26(DECATHLON.domains[1:])
    assert _conv_weights(model) == 5_806_944
    assert model.stem.weight.numel() == 864
    assert [_conv_weights(s) for s in model.stages] == [276_480, 1_105_920, 4_423_680]
    assert model.heads["aircraft"].weight.numel() + model.heads["aircraft"].bias.numel() == 25_700
    assert sum(p.numel() for p in model.heads["omniglot"].parameters()) == 417_111


def test_forward_shapes_per_task_and_task_lookup():
    model = build_model("resnet26", TASKS, width=0.25)
    x = torch.randn(2, 3, 18, 18)
    assert model(x, "a").shape == (2, 5) and model(x, 1).shape == (2, 3)
    assert model(torch.randn(2, 3, 72, 72), "a").shape == (2, 5)
    with pytest.raises(KeyError, match="unknown task"):
        model(x, "zzz")


def test_width_factor_scales_channels():
    model = ResNet26(TASKS, width=0.5)
    assert model.stem.out_channels == 16 and model.num_features == 128


def test_last_third_only_freezes_stem_and_first_two_stages_convs():
    model = ResNet26(TASKS, width=0.25, last_third_only=True)
    assert not model.stem.weight.requires_grad
    first_two = [m for s in model.stages[:2] for m in s.modules() if isinstance(m, nn.Conv2d)]
    assert all(not m.weight.requires_grad for m in first_two)
    assert all(m.weight.requires_grad for m in model.stages[2].modules() if isinstance(m, nn.Conv2d))
    assert model.stem_bn["a"].weight.requires_grad  # BatchNorm still trains
    shared = {id(p) for p in model.shared_parameters()}
    assert id(model.stem.weight) not in shared and id(model.stages[2][0].conv1.weight) in shared


def test_per_task_parameters_are_separate():
    model = ResNet26(TASKS, width=0.25)
    own_a, own_b = {id(p) for p in model.task_parameters("a")}, {id(p) for p in model.task_parameters("b")}
    shared = {id(p) for p in model.shared_parameters()}
    assert not own_a & own_b and not own_a & shared
    assert own_a | own_b | shared == {id(p) for p in model.parameters()}
    assert id(model.heads["a"].weight) in own_a and id(model.final_bn["b"].bias) in own_b
    assert len(model.parameters_for("a")) == len(shared) + len(own_a)


def test_he_init():
    model = ResNet26(TASKS)
    w = model.stages[2][1].conv1.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (9 * 256)), rel=0.02)


def test_single_task_weights_load_by_task_name():
    teacher = ResNet26([("b", 3)], width=0.25)
    student = ResNet26(TASKS, width=0.25)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not unexpected and missing and all(".a." in k for k in missing)  # only task a's own
    assert torch.equal(student.heads["b"].weight, teacher.heads["b"].weight)


def test_features_hooks_reproduce_forward():
    model = ResNet26(TASKS, width=0.25).eval()
    x = torch.randn(2, 3, 16, 16)
    feats = model.features(model.trunk(x, "a"), "a")
    assert len(feats) == 5 and feats[0].shape[1] == model.num_features
    assert torch.allclose(model.head(feats[-1], "a"), model(x, "a"), atol=1e-6)


def test_registry_and_factory_errors():
    assert {"resnet26", "partitioned_resnet26"} <= set(MODELS.available())
    with pytest.raises(KeyError, match="did you mean"):
        build_model("resnet62", TASKS)
    with pytest.raises(UserError, match="partitioned_resnet26"):
        build_model("resnet26", TASKS, partition="share_all")
    with pytest.raises(ValueError, match="distinct"):
        build_model("resnet26", [("a", 2), ("a", 3)])
