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
    model = ResNet26(TASKS, width=0.25, bn_semantics="own")
    own_a, own_b = {id(p) for p in model.task_parameters("a")}, {id(p) for p in model.task_parameters("b")}
    shared = {id(p) for p in model.shared_parameters()}
    assert not own_a & own_b and not own_a & shared
    assert own_a | own_b | shared == {id(p) for p in model.parameters()}
    assert id(model.heads["a"].weight) in own_a and id(model.final_bn["b"].bias) in own_b
    assert len(model.parameters_for("a")) == len(shared) + len(own_a)


def _reference_logits(model, x, task):
    """Rebuffi et al.'s / the original's ResNet-26 written out from the published architecture: 3x3 conv
    32 -> BN (no ReLU), 3 stages of 4 basic blocks (conv-BN-ReLU-conv-BN + avg-pool/zero-pad shortcut,
    ReLU), final BN + ReLU, global average pool, linear; the weights are the model's."""
    def bn(h, m):
        return torch.nn.functional.batch_norm(h, m.running_mean, m.running_var, m.weight, m.bias, False)

    F = torch.nn.functional
    h = bn(F.conv2d(x, model.stem.weight, padding=1), model.stem_bn[task])
    for stage in model.stages:
        for block in stage:
            y = F.relu(bn(F.conv2d(h, block.conv1.weight, stride=block.stride, padding=1), block.bn1[task]))
            y = bn(F.conv2d(y, block.conv2.weight, padding=1), block.bn2[task])
            if block.stride > 1:
                h = F.avg_pool2d(h, 2)
                h = torch.cat([h, h * 0], 1)
            h = F.relu(h + y)
    h = F.relu(bn(h, model.final_bn[task]))
    return F.linear(h.mean((2, 3)), model.heads[task].weight, model.heads[task].bias)


def _randomise_bns(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.weight.data, m.bias.data, m.running_mean):
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    for head in model.heads.values():
        head.weight.data.copy_(torch.randn(head.weight.shape, generator=g))


def test_forward_matches_the_published_resnet26_without_a_stem_relu():
    torch.manual_seed(0)  # the weights (the test's outcome must not depend on which tests ran before)
    model = ResNet26(TASKS, width=1.0).eval()
    _randomise_bns(model)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = model(x, "a"), _reference_logits(model, x, "a")
        assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)
        model.stem_relu = True  # the option restores the earlier extra ReLU: different logits
        assert not torch.allclose(model(x, "a"), ref, atol=1e-3, rtol=1e-3)


def test_original_bn_semantics_put_every_task_bn_in_each_optimizer_and_freeze_the_final_bn():
    # The original's counts for the 9 decathlon tasks under last_third_only (task 0's optimizer).
    tasks = DECATHLON.domains[1:]
    original = ResNet26(tasks, last_third_only=True)
    own = ResNet26(tasks, last_third_only=True, bn_semantics="own")
    assert sum(p.numel() for p in original.parameters_for(0)) == 4_514_468
    assert sum(p.numel() for p in own.parameters_for(0)) == 4_457_124
    assert not any(p.requires_grad for p in original.final_bn.parameters())
    assert all(p.requires_grad for p in ResNet26(tasks).final_bn.parameters())  # full training: it trains
    assert not original.zero_grads_to_none and own.zero_grads_to_none


def test_original_bn_semantics_decay_other_tasks_bns_in_a_tasks_step():
    from mtl.train.task_step import train_step
    from mtl.train.optim import make_sgd

    torch.manual_seed(0)
    model = ResNet26(TASKS, width=0.25, last_third_only=True)
    opts = {t: make_sgd(model.parameters_for(t), 0.1, 0.9, 0.1, True) for t in ("a", "b")}
    x = torch.randn(4, 3, 16, 16)
    train_step(model, opts["b"], "b", x, torch.tensor([0, 1, 2, 0]), amp=False, set_to_none=False)
    before = model.stem_bn["b"].weight.detach().clone()
    final = model.final_bn["a"].weight.detach().clone()
    train_step(model, opts["a"], "a", x, torch.tensor([0, 1, 2, 3]), amp=False, set_to_none=False)
    # task a's step decays task b's BatchNorm (zero gradient + weight decay), as the original's did
    assert torch.allclose(model.stem_bn["b"].weight, before * (1 - 0.1 * 0.1 * 1.9))
    assert torch.equal(model.final_bn["a"].weight, final)


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
