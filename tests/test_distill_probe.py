"""The proxy's probe readout: a k-fold ridge probe on each student's own kept channels."""

import math

import pytest
import torch

from distill_helpers import RES, TASKS, train_tiny_teachers
from mtl.distill.probe import probe_correct
from mtl.distill.proxy import ProxyTrainer, build_student
from mtl.meta.partition import preset


def _separable(n=60, channels=6, seed=0):
    """Three classes told apart by channels 0 and 1 alone; the others are noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = torch.randn(n, channels, generator=generator) * 0.3
    x[:, 0] += (labels == 1) * 3.0
    x[:, 1] += (labels == 2) * 3.0
    return x, labels


def test_the_probe_reads_whichever_channels_hold_the_classes():
    x, labels = _separable()
    moved = x[:, [4, 5, 2, 3, 0, 1]]  # the same information in other channel indices
    stacked = torch.stack([x, moved, x * torch.tensor([0.0, 0, 1, 1, 1, 1])], 1)  # third: informative channels zeroed
    correct = probe_correct(stacked, labels, 3)
    assert correct[0] == correct[1] and correct[0] >= 57  # 60 held-out predictions over the 5 folds
    assert correct[2] < 35  # chance is 20 of 60: noise channels alone do not tell the classes


def test_the_probe_is_deterministic_and_each_candidate_its_own():
    x, labels = _separable()
    alone = probe_correct(x.unsqueeze(1), labels, 3)
    together = probe_correct(torch.stack([torch.zeros_like(x), x], 1), labels, 3)
    assert together[1] == alone[0] and torch.equal(probe_correct(x.unsqueeze(1), labels, 3), alone)


def test_a_student_scored_by_the_probe(mini_data_dir, tmp_path_factory):
    from mtl.distill.features import FeatureCache, data_folder
    from mtl.distill.proxy import ProxySchedule
    from mtl.distill.teachers import load_teachers

    teachers = train_tiny_teachers(tmp_path_factory.getbasetemp() / "distill_exp", mini_data_dir)
    loaded = load_teachers(str(teachers), TASKS, teachers.parent, "mini_decathlon")
    features = FeatureCache(loaded, data_folder("mini_decathlon", mini_data_dir, TASKS), "mini_decathlon",
                            input_res=RES, train_images=16, val_images=20, readout="probe")
    partitions = [preset(name, len(TASKS), seed=3) for name in ("share_all", "independent")]
    for p in partitions:
        p.tasks = list(TASKS)
    student = build_student(features, partitions, [0, 0])
    assert student.final_bn  # distilled as the original's readout
    trainer = ProxyTrainer(features, student, ProxySchedule(steps=4, batch_size=4, lr_drop_steps=(3,)))
    trainer.train()
    first, again = trainer.score(), trainer.score()
    assert first == again
    assert all(math.isfinite(r["score"]) and 0 <= r["score"] for r in first)
    assert all(0 <= a <= 1 for r in first for a in r["accuracy"].values())
