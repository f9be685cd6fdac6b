"""Δm against single-task baselines: convention, averaging, baselines over seeds, selection on val."""

from __future__ import annotations

import pytest

from mtl.train.delta_m import delta_m, mean_baselines, relative_changes, select_on_validation


def test_single_metric_tasks():
    base = {"a": 0.5, "b": 0.8}
    assert delta_m({"a": 0.55, "b": 0.8}, base) == pytest.approx(5.0)
    assert delta_m(base, base) == 0.0
    assert delta_m({"err": 1.8}, {"err": 2.0}, lower_is_better=["err"]) == pytest.approx(10.0)


def test_averaging_conventions_differ_with_several_metrics_per_task():
    results = {"seg": {"miou": 0.44, "pix": 0.77}, "depth": {"abs": 0.9}}
    base = {"seg": {"miou": 0.40, "pix": 0.70}, "depth": {"abs": 1.0}}
    changes = relative_changes(results, base, lower_is_better=["abs"])
    assert changes["seg"] == pytest.approx({"miou": 10.0, "pix": 10.0})
    assert changes["depth"] == pytest.approx({"abs": 10.0})
    results["depth"]["abs"] = 1.1  # 10% worse
    assert delta_m(results, base, ["abs"], average="tasks") == pytest.approx((10.0 - 10.0) / 2)
    assert delta_m(results, base, ["abs"], average="metrics") == pytest.approx((10 + 10 - 10) / 3)


def test_errors_are_explicit():
    with pytest.raises(ValueError, match="no single-task baseline"):
        delta_m({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match="average"):
        delta_m({"a": 1.0}, {"a": 1.0}, average="median")


def test_baselines_average_over_seeds():
    baselines = mean_baselines({"a": [0.5, 0.7], "b": [{"acc": 0.2}, {"acc": 0.4}]})
    assert baselines["a"] == pytest.approx(0.6) and baselines["b"] == pytest.approx({"acc": 0.3})


def test_selection_uses_validation_only():
    records = [{"round": 1, "val": {"a": 0.5}, "test": {"a": 0.9}},
               {"round": 2, "val": {"a": 0.7}, "test": {"a": 0.1}},
               {"round": 3, "val": {"a": 0.7}, "test": {"a": 0.2}}]
    best = select_on_validation(records, lambda val: delta_m(val, {"a": 0.5}))
    assert best["round"] == 2  # best val, earliest on ties; test is never looked at
    with pytest.raises(ValueError, match="validation"):
        select_on_validation([{"test": {"a": 1.0}}], lambda v: 0.0)
