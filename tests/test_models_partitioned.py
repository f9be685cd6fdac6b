"""Partitioned ResNet-26: masked == sliced, backward masks, masks in checkpoints, cost with fraction."""

import copy

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mtl.meta.partition import Partition, from_fractions, preset
from mtl.models import build_model
from mtl.models.partitioned import LAYOUTS

TASKS = [("a", 5), ("b", 3), ("c", 4)]
X = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))



def _model(partition="random", layers="last_stage_conv1", **kw):
    torch.manual_seed(0)
    return build_model("partitioned_resnet26", TASKS, partition=partition, partition_layers=layers,
                       width=0.25, partition_seed=3, **kw)


def _run(model, mode, task="b"):
    model.exec_mode = mode
    model.zero_grad()
    out = model(X, task)
    out.square().sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layers", LAYOUTS)
def test_masked_and_sliced_give_same_outputs_and_gradients(layers):
    model = _model(layers=layers)
    for _ in range(2):  # second pass: after running stats were updated by both modes
        out_m, grad_m = _run(model, "masked")
        out_s, grad_s = _run(model, "sliced")
        assert torch.allclose(out_m, out_s, atol=1e-5, rtol=1e-4)
        assert grad_m.keys() == grad_s.keys()
        for name in grad_m:
            scale = grad_m[name].abs().max().item() + 1e-6
            assert torch.allclose(grad_m[name], grad_s[name], atol=1e-5 * scale, rtol=1e-4), name
    model.eval()
    with torch.no_grad():
        model.exec_mode = "masked"
        out_m = model(X, "c")
        model.exec_mode = "sliced"
        assert torch.allclose(out_m, model(X, "c"), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["masked", "sliced"])
def test_backward_masks_leave_other_rows_untouched(mode):
    model = _model("independent", exec_mode=mode)
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters_for("a"), lr=0.1)
    model(X, "a").sum().backward()
    opt.step()
    fwd, bwd = model.masks()
    for block in model.stages[2]:
        w0 = before[_name(model, block.conv1.weight)]
        changed = (block.conv1.weight.detach() != w0).flatten(1).any(1)
        assert not changed[~bwd[0]].any()  # rows of tasks b and c
        assert changed[bwd[0]].any()
    after = model.state_dict()
    for key in before:  # the other tasks' own BatchNorms and heads
        if ".b." in key or ".c." in key:
            assert torch.equal(after[key], before[key]), key


def test_backward_matrix_restricts_updates_within_forward_channels():
    raw = from_fractions(np.ones((3, 3)), np.diag([0.25, 0.5, 0.25]))  # share_fwd_only-like
    model = _model(Partition(raw))
    fwd, bwd = model.masks()
    assert fwd.all() and bwd.sum(1).tolist() == [16, 32, 16]
    for mode in ("masked", "sliced"):
        _, grads = _run(model, mode, task="b")
        rows = grads[_name(model, model.stages[2][1].conv1.weight)].flatten(1).abs().sum(1)
        assert (rows[~bwd[1]] == 0).all() and (rows[bwd[1]] > 0).any()


def test_guard_update_blocks_weight_decay_on_other_tasks_rows():
    model = _model("independent")
    opt = torch.optim.SGD(model.parameters_for("a"), lr=0.1, momentum=0.9, weight_decay=0.1)
    w = model.stages[2][0].conv1.weight
    w0 = w.detach().clone()
    model(X, "a").sum().backward()
    with model.guard_update("a"):
        opt.step()
    fwd, _ = model.masks()
    changed = (w.detach() != w0).flatten(1).any(1)
    assert not changed[~fwd[0]].any() and changed[fwd[0]].all()
    conv2 = dict(model.named_parameters())["stages.2.0.conv2.weight"]
    assert conv2.shape[1] == 64  # columns of other tasks are protected too (checked via update_masks)
    keep = dict((id(p), k) for p, k in model.update_masks("a"))[id(conv2)]
    assert keep.shape == (64, 64, 1, 1) and keep[:, ~fwd[0]].sum() == 0


def test_masks_are_saved_in_state_dict_and_restored():
    model = _model("random")
    state = model.state_dict()
    assert any(k.startswith("masks_") for k in state) and "partition_raw" in state
    other = _model("share_all")
    other.plan("a")  # a cached plan must not survive loading
    other.load_state_dict(state)
    assert np.allclose(other.partition.raw, model.partition.raw)
    model.eval(), other.eval()
    assert torch.allclose(model(X, "a"), other(X, "a"))
    assert other.partition_state()["partition"]["raw"] == model.partition_state()["partition"]["raw"]


def test_same_partition_and_seed_give_same_masks():
    a, b = _model("random"), _model("random")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("masks_"))


def test_features_are_full_width_and_agree_across_modes():
    model = _model(layers="all").eval()
    fwd, _ = model.masks()
    feats = {}
    for mode in ("masked", "sliced"):
        model.exec_mode = mode
        with torch.no_grad():
            feats[mode] = model.features(model.trunk(X, "a"), "a")
            assert torch.allclose(model.head(feats[mode][-1], "a"), model(X, "a"), atol=1e-5)
    for fm, fs in zip(feats["masked"], feats["sliced"]):
        assert fm.shape == fs.shape and torch.allclose(fm, fs, atol=1e-5)
        assert (fs[:, ~fwd[0]] == 0).all()


def test_sliced_cost_falls_with_fraction():
    flops = {}
    for f in (1.0, 0.5, 0.25):
        raw = from_fractions(np.diag([f] * 3) + (1 - np.eye(3)) * max(0, 2 * f - 1), np.diag([f] * 3))
        model = _model(Partition(raw), exec_mode="sliced").eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randn(1, 3, 72, 72), "a")
        flops[f] = counter.get_total_flops()
    last = 2 * sum(m.weight.numel() for m in _model().stages[2].modules() if isinstance(m, torch.nn.Conv2d)) * 81
    assert flops[1.0] - flops[0.5] == pytest.approx(0.5 * last, rel=0.02)
    assert flops[1.0] - flops[0.25] == pytest.approx(0.75 * last, rel=0.02)


def test_partition_state_reports_masks_and_channel_use():
    state = _model("share_fixed").partition_state()
    assert state["layers"] == "last_stage_conv1" and state["exec_mode"] == "sliced"
    assert state["channel_use"]["a"] == pytest.approx(0.75 + 0.25 / 3, abs=1e-3)
    assert state["masks"]["u0_c64"]["forward"]["mean_abs_error_channels"] <= 1.0


def test_per_block_partitions_and_bad_partitions():
    model = _model(preset("random", 3, num_unique=4, seed=1))
    assert {k for k in model.state_dict() if k.startswith("masks_")} == {f"masks_u{u}_c64" for u in range(4)}
    with pytest.raises(ValueError, match="U=2"):
        _model(preset("random", 3, num_unique=2))
    with pytest.raises(ValueError, match="exec_mode"):
        _model(exec_mode="fast")


def test_all_stages_conv1_masks_each_blocks_first_conv_in_every_stage():
    """The original's layout without last_third_only: the first conv of every block of all three
    stages is masked (12 convs at widths 64/128/256 x width); the stem, every second conv and the
    residual stream stay full width."""
    model = _model("independent", layers="all_stages_conv1", exec_mode="masked")
    widths = [16, 32, 64]  # 64/128/256 at width 0.25
    assert sorted(k for k in model.state_dict() if k.startswith("masks_")) == [f"masks_u0_c{c}" for c in widths]
    for c in widths:
        fwd, bwd = model.masks(0, c)
        assert fwd.shape == bwd.shape == (3, c) and fwd.dtype == torch.bool
        assert (fwd.sum(1) - c / 3).abs().max() <= 1 and torch.equal(fwd, bwd)  # a third each, all updated
    for task in range(3):
        convs = model.conv_masks(task)
        assert convs[0][1].all() and convs[0][2].all()  # the stem
        blocks = [b for stage in model.stages for b in stage]
        assert len(convs) == 1 + 2 * len(blocks) == 25
        for k, block in enumerate(blocks):
            (conv1, rows1, cols1), (conv2, rows2, cols2) = convs[1 + 2 * k], convs[2 + 2 * k]
            assert conv1 is block.conv1 and conv2 is block.conv2
            assert torch.equal(rows1, model.masks(0, block.c_out)[0][task]) and cols1.all()
            assert rows2.all() and torch.equal(cols2, rows1)


def test_all_stages_conv1_restricts_updates_in_every_stage():
    model = _model("independent", layers="all_stages_conv1")
    _, grads = _run(model, "sliced", task="a")
    for stage in model.stages:
        for block in stage:
            _, bwd = model.masks(0, block.c_out)
            rows = grads[_name(model, block.conv1.weight)].flatten(1).abs().sum(1)
            assert (rows[~bwd[0]] == 0).all() and (rows[bwd[0]] > 0).all()
    assert (grads[_name(model, model.stem.weight)].flatten(1).abs().sum(1) > 0).all()
    per_block = _model(preset("random", 3, num_unique=12, seed=1), layers="all_stages_conv1")
    assert len([k for k in per_block.state_dict() if k.startswith("masks_")]) == 12


def test_train_options_offer_every_layout():
    from mtl.config.options import option_fields
    from mtl.jobs.train_options import TrainOptions

    assert option_fields(TrainOptions)["partition_layers"].metadata["choices"] == LAYOUTS


def _name(model, param):
    return next(n for n, p in model.named_parameters() if p is param)
