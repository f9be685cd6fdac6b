"""The distillation proxy on tiny teachers: finite, reproducible scores; caching, resume and the student's
semantics (same function and masks as the partitioned ResNet-26 of the train job)."""

import math

import numpy as np
import pytest
import torch

from distill_helpers import RES, TASKS, WIDTH, tiny_cache, train_tiny_teachers
from mtl.distill.proxy import ProxyTrainer, build_student, evaluate_candidate
from mtl.distill.student import load_student_init
from mtl.distill.sgd import TaskSGD
from mtl.meta.partition import preset
from mtl.models.partitioned import PartitionedResNet26


@pytest.fixture(scope="session")
def teachers(mini_data_dir, tmp_path_factory):
    return train_tiny_teachers(tmp_path_factory.getbasetemp() / "distill_exp", mini_data_dir)


@pytest.fixture(scope="module")
def cache(teachers, mini_data_dir):
    return tiny_cache(teachers, mini_data_dir)


def _partition(name, seed=3):
    partition = preset(name, len(TASKS), seed=seed)
    partition.tasks = list(TASKS)
    return partition


@pytest.mark.parametrize("name", ["share_all", "independent", "random"])
def test_scores_are_finite_and_reproducible(cache, name):
    features, schedule = cache
    first = evaluate_candidate(features, _partition(name), 7, schedule)
    again = evaluate_candidate(features, _partition(name), 7, schedule)
    assert first == again
    assert math.isfinite(first["score"]) and first["score"] > 0
    assert set(first["per_task"]) == set(TASKS) == set(first["accuracy"]) == set(first["loss"])
    assert all(math.isfinite(v) for v in first["loss"].values())
    expected = np.mean(list(first["per_task"].values()))
    assert first["score"] == pytest.approx(expected)
    assert first["resource"] == pytest.approx(np.mean(_partition(name).channel_use()))


def test_caching_teacher_features_does_not_change_scores(teachers, mini_data_dir, cache):
    features, schedule = cache
    uncached, _ = tiny_cache(teachers, mini_data_dir, cache=False)
    assert uncached.nbytes() < features.nbytes() or not uncached.cached
    part = _partition("random")
    a = evaluate_candidate(features, part, 1, schedule)
    b = evaluate_candidate(uncached, part, 1, schedule)
    assert a["score"] == pytest.approx(b["score"], abs=1e-9)
    for task in TASKS:
        assert a["loss"][task] == pytest.approx(b["loss"][task], rel=1e-4)


def test_resumed_training_ends_where_an_uninterrupted_one_does(cache):
    features, schedule = cache
    part = _partition("share_fixed")
    straight = ProxyTrainer(features, build_student(features, [part], [2]), schedule)
    straight.train()
    first = ProxyTrainer(features, build_student(features, [part], [2]), schedule)
    first.train(until=13)
    state = first.state_dict()
    resumed = ProxyTrainer(features, build_student(features, [part], [2]), schedule)
    resumed.load_state_dict(state)
    resumed.train()
    assert resumed.score() == straight.score()


@pytest.mark.parametrize("layers", ["last_stage_conv1", "last_stage"])
def test_student_matches_the_partitioned_resnet_and_its_masks(cache, layers):
    features, _ = cache
    part = _partition("random", seed=11)
    student = build_student(features, [part], [5], layers=layers)
    model = PartitionedResNet26([(t, 10) for t in TASKS], part, width=WIDTH, exec_mode="masked", layers=layers).eval()
    last = model.stages[-1]
    with torch.no_grad():
        for b, block in enumerate(last):
            block.conv1.weight.copy_(student.conv1[b][0])
            block.conv2.weight.copy_(student.conv2[b][0])
    fwd, bwd = model.masks(channels=last[0].c_out)
    assert torch.equal(student.fwd[0, :, 0].bool(), fwd)
    x = torch.randn(3, last[0].c_in, RES // 4, RES // 4)
    for t, task in enumerate(TASKS):
        ours = student.forward(x, t, train=False)
        theirs = model.features(x, task)[:-1]
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a[:, 0], b, rtol=1e-5, atol=1e-5)
        keeps = {id(w): keep for w, keep in model.update_masks(task)}
        weights = [block.conv1.weight for block in last] + [block.conv2.weight for block in last]
        for weight, ours_keep in zip(weights, student.update_masks(t)):  # the student's order: conv1s, conv2s
            theirs_keep = keeps.get(id(weight), torch.ones(1, dtype=torch.bool))
            assert torch.equal(theirs_keep.expand(weight.shape), ours_keep[0].bool().expand(weight.shape))


def test_task_sgd_matches_torch_sgd_and_respects_masks():
    torch.manual_seed(0)
    shared, own = torch.randn(4, 3, requires_grad=True), torch.randn(3, requires_grad=True)
    ref_shared, ref_own = (p.detach().clone().requires_grad_(True) for p in (shared, own))
    ours = TaskSGD([shared], [[own]], momentum=0.9, weight_decay=1e-2)
    theirs = torch.optim.SGD([ref_shared, ref_own], lr=0.5, momentum=0.9, weight_decay=1e-2, nesterov=True)
    for _ in range(3):
        for params in ((shared, own), (ref_shared, ref_own)):
            (params[0].sin().sum() + params[1].pow(2).sum()).backward()
        ours.step(0, 0.5, [torch.ones(1)])
        theirs.step()
        theirs.zero_grad()
    torch.testing.assert_close(shared, ref_shared)
    torch.testing.assert_close(own, ref_own)
    before = shared.detach().clone()
    shared.sum().backward()
    own.sum().backward()
    ours.step(0, 0.5, [torch.tensor([[1.0], [0.0], [1.0], [0.0]])])
    assert torch.equal(shared[1], before[1]) and torch.equal(shared[3], before[3])
    assert not torch.equal(shared[0], before[0])


def test_student_can_start_from_a_runs_last_stage(cache, teachers):
    features, schedule = cache
    init = load_student_init(teachers / "digits")
    student = build_student(features, [_partition("random"), _partition("share_all")], [0, 1], init=init)
    digits = features.teachers["digits"].model
    for b, block in enumerate(digits.stages[-1]):
        assert torch.equal(student.conv1[b][1], block.conv1.weight)
        assert torch.equal(student.bn[2][2 * b][0][0], block.bn1["digits"].weight)  # colors starts from digits' BN
    assert math.isfinite(ProxyTrainer(features, student, schedule).score()[0]["score"])


def test_original_readout_distils_the_final_map_through_the_students_own_bn(cache, teachers):
    """As the original: the last distilled feature is block 4 after the final BN + ReLU (the teacher's for
    the target, the student's own for the student); the score is the teacher's head on the student's map.
    A share_all student started from the digits teacher is that teacher: same features, same accuracy."""
    from mtl.distill.features import distilled

    features, schedule = cache
    t = TASKS.index("digits")
    model = features.teachers["digits"].model
    x, targets = features.train_batch(t, torch.arange(4))
    with torch.no_grad():
        expected = distilled(model.features(x, "digits"), "original")
        assert torch.allclose(targets[-1], expected[-1]) and not torch.allclose(targets[-1], model.features(x, "digits")[3])
        student = build_student(features, [_partition("share_all")], [0], init=load_student_init(teachers / "digits"))
        assert student.final_bn and not any(v.requires_grad for v in student.end_bn[t])
        for ours, theirs in zip(student.forward(x, t, train=False), expected):
            torch.testing.assert_close(ours[:, 0], theirs, rtol=1e-5, atol=1e-5)
    accuracy, _ = ProxyTrainer(features, student, schedule).evaluate()
    assert accuracy[0]["digits"] == pytest.approx(features.teacher_accuracy["digits"])


def test_teacher_bn_readout_keeps_the_raw_last_block(teachers, mini_data_dir):
    from mtl.distill.features import FeatureCache, data_folder
    from mtl.distill.teachers import load_teachers

    loaded = load_teachers(str(teachers), TASKS, teachers.parent, "mini_decathlon")
    features = FeatureCache(loaded, data_folder("mini_decathlon", mini_data_dir, TASKS), "mini_decathlon",
                            input_res=RES, train_images=8, val_images=8, readout="teacher_bn")
    x, targets = features.train_batch(0, torch.arange(4))
    with torch.no_grad():
        raw = loaded[TASKS[0]].model.features(x, TASKS[0])[3]
    assert torch.allclose(targets[-1], raw)
    assert not build_student(features, [_partition("share_all")], [0]).final_bn
