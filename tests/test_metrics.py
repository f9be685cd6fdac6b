"""Accuracy, decathlon score (§5.4) and Δm."""

import pytest
import torch

from mtl.data.domains import DECATHLON
from mtl.train.metrics import accuracy, correct_count, decathlon_points, decathlon_score, delta_m


def test_accuracy_top1_and_topk():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 1])
    assert accuracy(logits, labels) == pytest.approx(1 / 3)
    assert correct_count(logits, labels, k=2) == 2
    assert accuracy(logits[:0], labels[:0]) == 0.0


def test_baseline_accuracies_score_exactly_2500():
    accs = {d.name: d.baseline_acc / 100 for d in DECATHLON.domains}
    assert len(accs) == 10
    assert decathlon_score(accs) == pytest.approx(2500.0, abs=1e-9)
    for d in DECATHLON.domains:
        assert decathlon_points(d.baseline_acc / 100, d.baseline_acc) == pytest.approx(250.0)


def test_perfect_domain_scores_1000_and_twice_the_baseline_error_scores_0():
    assert decathlon_score({d.name: 1.0 for d in DECATHLON.domains}) == pytest.approx(10_000.0)
    base = DECATHLON.domain("dtd").baseline_acc
    twice_error = 1 - 2 * (1 - base / 100)
    assert decathlon_points(twice_error, base) == pytest.approx(0.0)
    assert decathlon_points(0.0, base) == 0.0


def test_decathlon_rejects_percent_and_unknown_domains():
    with pytest.raises(ValueError, match="fraction"):
        decathlon_points(82.1, 82.12)
    with pytest.raises(KeyError):
        decathlon_score({"not_a_domain": 0.5})


def test_delta_m_signs():
    base = {"a": 0.5, "err": 2.0}
    assert delta_m({"a": 0.55, "err": 1.8}, base, lower_is_better=["err"]) == pytest.approx(10.0)
    assert delta_m(base, base) == 0.0
