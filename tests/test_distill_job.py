"""The distill job from the command line, and the proxy as a search objective."""

import json
import pickle

import numpy as np
import pytest

from distill_helpers import RES, TASKS, WIDTH, train_tiny_teachers
from mtl.meta.objectives import get_objective
from mtl.meta.partition import preset, save_partition
from mtl.meta.space import PartitionBlock, Space

TINY = ["--config", "exp.mini_dist", "--device", "cpu", "--task_choice", "-".join(TASKS), "--width", str(WIDTH),
        "--input_res", str(RES), "--steps", "16", "--lr_drop_steps", "10", "--val_images", "48",
        "--checkpoint_every", "10", "--log_every", "5"]


@pytest.fixture(scope="session")
def teachers(mini_data_dir, tmp_path_factory):
    return train_tiny_teachers(tmp_path_factory.getbasetemp() / "distill_exp", mini_data_dir)


def test_distill_job_scores_a_partition_file(cli, teachers, mini_data_dir):
    partition = preset("random", len(TASKS), seed=3)
    partition.tasks = list(TASKS)
    save_partition(partition, cli.cwd / "P.json")
    args = [*TINY, "--data_dir", str(mini_data_dir), "--teachers", str(teachers)]
    result = cli("-e", "distillation_test", *args, "--partition", "P.json")
    assert result.returncode == 0, result.stderr
    run = cli.cwd / "exp" / "distillation_test"
    results = json.loads((run / "results.json").read_text())
    assert set(results["per_task"]) == set(TASKS) and 0 < results["score"]
    assert results["partition"]["raw"] == json.loads((run / "partition.json").read_text())["raw"]
    assert (run / "checkpoints" / "best.pt").exists()
    again = cli("-e", "again", *args, "--partition", "P.json")
    assert again.returncode == 0
    assert json.loads((cli.cwd / "exp/again/results.json").read_text())["score"] == results["score"]


def test_missing_teachers_fail_before_training(cli, teachers, mini_data_dir):
    result = cli("-e", "nope", *TINY, "--data_dir", str(mini_data_dir), "--teachers", str(teachers),
                 "--task_choice", "digits-glyphs")
    assert result.returncode == 2
    assert "no teacher for task(s) glyphs" in result.stderr


def test_proxy_objective_is_registered_picklable_and_batches(teachers, mini_data_dir, monkeypatch):
    monkeypatch.setenv("MTL_DEVICE", "cpu")
    factory = get_objective("proxy")
    space = Space((PartitionBlock(tuple(TASKS)),))
    objective = factory(space=space, teachers=[f"teachers/{t}" for t in TASKS], dataset="mini_decathlon",
                        data_dir=str(mini_data_dir), exp_root=str(teachers.parent), steps=12, lr_drop_steps=[8],
                        val_images=48, eval_batch_size=64)
    params = [space.to_params(space.default()), space.to_params(space.sample(np.random.default_rng(1)))]
    together = objective.evaluate_batch(params, [5, 6])
    copy = pickle.loads(pickle.dumps(objective))
    assert copy._state is None  # teachers and cache are rebuilt in the worker
    alone = copy(params[1], 6)
    assert alone["score"] == pytest.approx(together[1]["score"], abs=1e-9)
    assert together[0]["resource"] == pytest.approx(1.0)
    assert set(alone) >= {"score", "per_task", "resource", "resource_per_task"}
