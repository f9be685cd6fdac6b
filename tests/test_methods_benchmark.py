"""The methods_benchmark job: its child runs, the table's selection and Δm, one tiny run end to end."""

import json

import pytest

from mtl.config.options import build_options
from mtl.errors import UserError
from mtl.jobs.methods_benchmark import MethodsBenchmarkOptions, build_table, child_runs, format_table


def _options(**values):
    base = {"train": {"task_choice": "digits-shapes", "train_iters": 10, "lr_drop_steps": [15]},
            "methods": ["naive", "mgda"]}
    return build_options(MethodsBenchmarkOptions, {**base, **values}, "test")


def test_child_runs_give_baselines_and_equal_images_to_naive():
    runs = dict(child_runs(_options(method_options={"mgda": {"normalize": "l2"}})))
    assert list(runs) == ["stl_digits", "stl_shapes", "naive", "mgda"]
    assert runs["stl_shapes"]["task_choice"] == "shapes" and runs["stl_shapes"]["model"] == "resnet26"
    assert runs["naive"]["train_iters"] == 20 and runs["naive"]["lr_drop_steps"] == [30]
    assert runs["mgda"]["train_iters"] == 10 and runs["mgda"]["method_options"] == {"normalize": "l2"}


@pytest.mark.parametrize("values,fragment", [
    ({"methods": ["mgdaa"]}, "did you mean 'mgda'"),
    ({"method_options": {"pcgrad": {}}}, "not benchmarked: pcgrad"),
    ({"method_options": {"mgda": {"normalise": "l2"}}}, "did you mean 'normalize'"),
    ({"train": {"widht": 0.5}}, "did you mean 'width'"),
])
def test_bad_benchmark_options_are_user_errors(values, fragment):
    with pytest.raises(UserError, match=fragment):
        _options(**values)


def _result(history, per_step=0.1):
    return {"status": "done", "history": [{"step": s, "val_accuracy": v} for s, v in history],
            "val_accuracy": history[-1][1], "perf": {"seconds_per_step": per_step, "cpu_seconds_per_step": per_step, "peak_memory_mb": 10.0},
            "images_per_step": 16, "method": {"name": "x"}}


def test_table_selects_on_validation_and_computes_delta_m():
    outcomes = {
        "stl_a": _result([(1, {"a": 0.5}), (2, {"a": 0.8})]),
        "stl_b": _result([(1, {"b": 0.4}), (2, {"b": 0.2})]),  # baseline = its best round: 0.4
        "m": _result([(1, {"a": 0.4, "b": 0.8}), (2, {"a": 0.88, "b": 0.2})]),
        "broken": {"status": "failed", "exit_status": 1},
    }
    table = build_table(["a", "b"], outcomes, baselines=True)
    assert table["baselines"] == {"a": 0.8, "b": 0.4}
    row = {r["run"]: r for r in table["rows"]}["m"]
    # round 1: (0.4/0.8 - 1 + 0.8/0.4 - 1) / 2 = 0.25; round 2: (0.1 - 0.5) / 2 = -0.2 -> round 1 is chosen
    assert row["selected_step"] == 1 and row["delta_m"] == pytest.approx(25.0)
    assert row["delta_m_last"] == pytest.approx(-20.0) and row["cpu_ms_per_image"] == pytest.approx(6.25)
    text = format_table(table)
    assert "| m | 0.400 | 0.800 | +25.00 | -20.00 |" in text and "| broken | failed |" in text
    assert "Δm = 100/T" in text


@pytest.mark.slow
def test_benchmark_runs_children_and_writes_the_table(cli, mini_data_dir):
    result = cli("-e", "bench", "--config", "exp.methods", "--device", "cpu", "--data_dir", str(mini_data_dir),
                 "--methods", "mean", "--baselines", "false", "--train.task_choice", "digits-shapes",
                 "--train.num_rounds", "1", "--train.train_iters", "2", "--train.input_res", "16",
                 "--train.in_memory", "false")
    assert result.returncode == 0, result.stderr
    run = cli.cwd / "exp" / "bench"
    table = json.loads((run / "methods_table.json").read_text())
    assert [r["run"] for r in table["rows"]] == ["mean"] and table["rows"][0]["status"] == "done"
    assert "| mean |" in (run / "methods_table.md").read_text()
    assert json.loads((run / "mean" / "status.json").read_text())["state"] == "done"
    again = cli("-e", "bench", "--continue")  # a finished child is reused, not retrained
    assert again.returncode == 0 and "done before, reusing its results" in again.stderr
