"""main.py end to end on the toy job: run folders, errors, --list, exact resume after SIGKILL, SIGTERM, TensorBoard."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtl.util.checkpoint import CheckpointStore

TOY = ["--config", "exp.toy", "--device", "cpu", "--num_rounds", "3", "--train_iters", "40",
       "--checkpoint_every", "15", "--log_every", "5"]


def _final_state(run_path):
    step, state = CheckpointStore(run_path / "checkpoints").load_latest()
    return step, state


def _assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_run_folder_contents(cli):
    result = cli("-e", "sweep/t1", *TOY)
    assert result.returncode == 0, result.stderr
    run = cli.cwd / "exp" / "sweep" / "t1"
    config = json.loads((run / "config.json").read_text())
    assert config["job"] == "toy" and config["options"]["train_iters"] == 40
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    assert json.loads((run / "results.json").read_text())["steps"] == 120
    assert (run / "checkpoints" / "best.pt").exists()
    log_lines = (run / "log.txt").read_text().splitlines()
    assert any("round 3/3" in line for line in log_lines)
    assert all(line in result.stderr for line in log_lines)  # console and log.txt carry the same lines


def test_existing_run_is_not_overwritten(cli):
    assert cli("-e", "r", *TOY, "--num_rounds", "1").returncode == 0
    again = cli("-e", "r", *TOY, "--num_rounds", "1")
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--continue" in again.stderr
    assert "Traceback" not in again.stderr
    moved = cli("-e", "r", *TOY, "--num_rounds", "1", "--overwrite")
    assert moved.returncode == 0
    aside = [p.name for p in (cli.cwd / "exp").iterdir() if p.name.startswith("r.old-")]
    assert len(aside) == 1 and (cli.cwd / "exp" / aside[0] / "results.json").exists()


@pytest.mark.parametrize("args,fragment", [
    (["-e", "x", "--config", "exp.nope"], "unknown config"),
    (["-e", "x", "--config", "exp.toy", "--lr", "abc"], "not a valid float"),
    (["-e", "../escape", "--config", "exp.toy"], "not a valid run name"),
    (["-e", "x", "--continue"], "no run 'x'"),
    (["--config", "exp.toy"], "name the run with -e"),
    (["-e", "x", "--config", "exp.toy", "--device", "tpu"], "not a device"),
])
def test_user_errors_exit_2_with_a_message(cli, args, fragment):
    result = cli(*args)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_user_error_in_a_subprocess_prints_no_traceback(main_runner):
    result = main_runner("-e", "x", "--config", "exp.toy", "--lr", "abc")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_list_shows_configs_and_runs(cli):
    cli("-e", "listed", *TOY, "--num_rounds", "1")
    out = cli("--list").stdout
    assert "exp.toy" in out and "listed" in out and "done" in out


def test_help_lists_every_option_with_default(cli):
    out = cli("--config", "exp.toy", "--help").stdout
    for name in ("--train_iters", "--lr", "--seed", "--device", "--num_rounds"):
        assert name in out
    assert "(default: 50)" in out


@pytest.mark.slow
def test_sigkill_then_continue_is_bitwise_identical(main_runner):
    assert main_runner("-e", "straight", *TOY).returncode == 0
    killed = main_runner("-e", "killed", *TOY, env={"MTL_FAULT": "KILL@train_step=52"})
    assert killed.returncode == -9
    assert json.loads((main_runner.cwd / "exp/killed/status.json").read_text())["state"] == "running"
    resumed = main_runner("-e", "killed", "--continue")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 45" in resumed.stderr
    step_a, state_a = _final_state(main_runner.cwd / "exp/straight")
    step_b, state_b = _final_state(main_runner.cwd / "exp/killed")
    assert step_a == step_b == 120
    _assert_same_parameters(state_a["model"], state_b["model"])
    results = [json.loads((main_runner.cwd / f"exp/{r}/results.json").read_text()) for r in ("straight", "killed")]
    assert results[0] == results[1]


@pytest.mark.slow
def test_sigterm_checkpoints_and_says_how_to_resume(main_runner):
    stopped = main_runner("-e", "pre", *TOY, env={"MTL_FAULT": "TERM@train_step=20"})
    assert stopped.returncode == 143
    assert "python main.py -e pre --continue" in stopped.stderr
    run = main_runner.cwd / "exp/pre"
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    assert CheckpointStore(run / "checkpoints").latest_step() == 20
    resumed = main_runner("-e", "pre", "--continue", "--num_rounds", "4")  # more rounds is a safe change
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "results.json").read_text())["steps"] == 160


def test_changing_model_shape_on_continue_is_refused(cli):
    assert cli("-e", "shape", *TOY, "--num_rounds", "1").returncode == 0
    result = cli("-e", "shape", "--continue", "--hidden", "64")
    assert result.returncode == 2 and "cannot change hidden" in result.stderr


def test_tensorboard_events_hold_documented_tags(cli):
    assert cli("-e", "tb", *TOY, "--num_rounds", "1").returncode == 0
    events = EventAccumulator(str(cli.cwd / "exp/tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"blobs_a/train/loss", "blobs_b/train/loss", "train/lr", "blobs_a/val/accuracy"} <= tags
    assert [e.step for e in events.Scalars("blobs_a/val/accuracy")] == [40]


def test_prepare_command_reports_each_domain(cli, mini_data_dir):
    result = cli("--prepare", "mini_decathlon", "--data_dir", str(mini_data_dir))
    assert result.returncode == 0, result.stderr
    assert "digits" in result.stdout and "prepared mini_decathlon" in result.stdout


def test_prepare_missing_devkit_is_a_user_error(cli, tmp_path):
    result = cli("--prepare", "decathlon", "--data_dir", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
