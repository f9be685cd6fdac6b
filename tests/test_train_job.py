"""The train job on the mini-decathlon (CPU): it learns, reports resources and score, and resumes exactly."""

import json

import pytest
import torch

from mtl.util.checkpoint import CheckpointStore

TINY = ["--config", "exp.mini_dec", "--device", "cpu", "--width", "0.25", "--input_res", "24",
        "--batch_size", "32", "--lr", "0.05", "--val_max_images", "200", "--eval_batch_size", "200",
        "--prefetch", "0"]


def _results(cwd, run):
    return json.loads((cwd / "exp" / run / "results.json").read_text())


@pytest.mark.slow
def test_single_task_learns_well_above_chance(cli, mini_data_dir):
    result = cli("-e", "single", *TINY, "--data_dir", str(mini_data_dir), "--model", "resnet26",
                 "--task_choice", "digits", "--num_rounds", "2", "--train_iters", "60", "--lr_drop_steps", "90")
    assert result.returncode == 0, result.stderr
    results = _results(cli.cwd, "single")
    assert results["val_accuracy"]["digits"] > 0.5  # chance is 0.1
    assert results["resources"]["digits"]["params"] > 0
    assert (cli.cwd / "exp/single/predictions.json").exists()


@pytest.mark.slow
def test_partitioned_three_tasks_learn_and_resume_exactly(main_runner, mini_data_dir):
    args = [*TINY, "--data_dir", str(mini_data_dir), "--task_choice", "digits-shapes-colors",
            "--partition", "share_fixed:0.5", "--num_rounds", "2", "--train_iters", "90",
            "--lr_drop_steps", "150", "--checkpoint_every", "40"]
    straight = main_runner("-e", "straight", *args)
    assert straight.returncode == 0, straight.stderr
    killed = main_runner("-e", "killed", *args, env={"MTL_FAULT": "KILL@train_step=100"})
    assert killed.returncode == -9
    resumed = main_runner("-e", "killed", "--continue")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 90" in resumed.stderr
    cwd = main_runner.cwd
    a = CheckpointStore(cwd / "exp/straight/checkpoints").load_latest()[1]["model"]
    b = CheckpointStore(cwd / "exp/killed/checkpoints").load_latest()[1]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    first, second = _results(cwd, "straight"), _results(cwd, "killed")
    assert first["val_accuracy"] == second["val_accuracy"]
    chance = {"digits": 0.1, "shapes": 1 / 8, "colors": 1 / 4}
    assert sum(first["val_accuracy"][t] - chance[t] for t in chance) > 0.3


def test_missing_decathlon_data_is_a_user_error(cli, tmp_path):
    result = cli("-e", "dec", "--config", "exp.dec", "--last_third_only", "false", "--data_dir", str(tmp_path / "nowhere"),
                 "--device", "cpu")
    assert result.returncode == 2
    assert "--prepare decathlon" in result.stderr


def test_bad_task_choice_is_a_user_error(cli, mini_data_dir):
    result = cli("-e", "bad", *TINY, "--data_dir", str(mini_data_dir), "--task_choice", "1-99")
    assert result.returncode == 2 and "out of range" in result.stderr
