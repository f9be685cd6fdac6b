"""Per-task parameters and MACs against the figures of reference §6.3."""

import numpy as np
import pytest

from mtl.meta.partition import Partition, from_fractions
from mtl.models import build_model
from mtl.models.resources import format_resources, network_conv_params, task_resources

TASKS = [("aircraft", 100), ("dtd", 47), ("gtsrb", 43), ("svhn", 10)]
STAGE_MACS_72 = 358_318_080  # each stage at 72 px; stem 4,478,976



def test_full_network_params_and_macs():
    res = task_resources(build_model("resnet26", TASKS), input_size=72)["aircraft"]
    assert res.conv_params == 5_806_944
    assert res.conv_macs == 4_478_976 + 3 * STAGE_MACS_72
    assert res.conv_macs / 1e9 == pytest.approx(1.079, abs=5e-4)
    assert res.head_params == 25_700
    res64 = task_resources(build_model("resnet26", TASKS), 64)["aircraft"]
    assert res64.conv_macs / 1e9 == pytest.approx(0.853, abs=5e-4)


def test_partitioned_last_stage_cost_is_linear_in_channel_fraction():
    f = np.array([1.0, 0.5, 0.25, 0.125])
    raw = from_fractions(np.diag(f), np.diag(f))
    model = build_model("partitioned_resnet26", TASKS, partition=Partition(raw))
    res = task_resources(model, 72)
    full_rest = 4_478_976 + 2 * STAGE_MACS_72
    for task, fi in zip([t for t, _ in TASKS], f):
        assert res[task].conv_macs == pytest.approx(full_rest + fi * STAGE_MACS_72, rel=1e-6)
        assert res[task].conv_params == pytest.approx(1_383_264 + fi * 4_423_680, rel=1e-6)
    assert "aircraft" in format_resources(res, res["aircraft"])


def test_network_params_count_union_of_task_channels():
    share_all = build_model("partitioned_resnet26", TASKS, partition="share_all", width=0.25)
    independent = build_model("partitioned_resnet26", TASKS, partition="independent", width=0.25)
    plain = build_model("resnet26", TASKS, width=0.25)
    full = task_resources(plain)["dtd"].conv_params
    assert network_conv_params(share_all) == network_conv_params(independent) == full
    half = build_model("partitioned_resnet26", TASKS, partition="share_fixed:0.0", width=0.25)
    assert network_conv_params(half) == full  # 4 disjoint quarters cover every channel
