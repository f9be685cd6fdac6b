"""The ImageNet backbone: last_third_only needs one; its weights reach every task of a training; the
pipeline's backbone stage resumes like every stage and initialises teachers, retrains and the proxy's
student (tensors compared)."""

import json

import pytest
import torch

from mtl.runner.nested import nested_status
from mtl.util.checkpoint import CheckpointStore

TINY = ["--config", "exp.mini_dec", "--device", "cpu", "--width", "0.125", "--input_res", "16",
        "--batch_size", "8", "--val_max_images", "16", "--eval_batch_size", "100", "--prefetch", "0",
        "--num_rounds", "1", "--train_iters", "4", "--lr_drop_steps", "[100]", "--in_memory", "false"]


def _weights(run):
    store = CheckpointStore(run / "checkpoints")
    return (store.load_best() or store.load_latest())[1]["model"]


def test_last_third_only_without_a_backbone_is_a_user_error(cli, mini_data_dir):
    for extra in ([], ["--backbone", "none"]):
        result = cli("-e", "frozen", *TINY, "--data_dir", str(mini_data_dir), "--last_third_only", "true", *extra)
        assert result.returncode == 2 and "--backbone RUN" in result.stderr and "exp.imagenet" in result.stderr


def test_backbone_weights_and_batchnorms_reach_every_task(cli, mini_data_dir):
    data = ["--data_dir", str(mini_data_dir)]
    assert cli("-e", "imnet", *TINY, *data, "--model", "resnet26", "--task_choice", "digits").returncode == 0
    result = cli("-e", "mtl", *TINY, *data, "--task_choice", "shapes-colors", "--backbone", "imnet",
                 "--last_third_only", "true")
    assert result.returncode == 0, result.stderr
    backbone, trained = _weights(cli.cwd / "exp/imnet"), _weights(cli.cwd / "exp/mtl")
    assert torch.equal(trained["stem.weight"], backbone["stem.weight"])  # frozen at the backbone's
    assert torch.equal(trained["stages.1.3.conv2.weight"], backbone["stages.1.3.conv2.weight"])
    for task in ("shapes", "colors"):  # the final BN does not train under last_third_only: still the backbone's
        assert torch.equal(trained[f"final_bn.{task}.weight"], backbone["final_bn.digits.weight"])
        assert torch.equal(trained[f"final_bn.{task}.bias"], backbone["final_bn.digits.bias"])
    assert "backbone" in (cli.cwd / "exp/mtl/log.txt").read_text()


def test_a_multi_task_backbone_gives_each_task_it_learned_its_own_batchnorms(cli, mini_data_dir):
    data = ["--data_dir", str(mini_data_dir)]
    assert cli("-e", "both", *TINY, *data, "--model", "resnet26", "--task_choice", "shapes-colors").returncode == 0
    result = cli("-e", "ft", *TINY, *data, "--model", "resnet26", "--task_choice", "colors-digits",
                 "--backbone", "both", "--last_third_only", "true")
    assert result.returncode == 0, result.stderr
    backbone, trained = _weights(cli.cwd / "exp/both"), _weights(cli.cwd / "exp/ft")
    assert not torch.equal(backbone["final_bn.colors.weight"], backbone["final_bn.shapes.weight"])
    assert torch.equal(trained["final_bn.colors.weight"], backbone["final_bn.colors.weight"])  # its own
    assert torch.equal(trained["final_bn.digits.weight"], backbone["final_bn.shapes.weight"])  # the first task's
    assert torch.equal(trained["stages.1.3.conv2.weight"], backbone["stages.1.3.conv2.weight"])
    partitioned = cli("-e", "part", *TINY, *data, "--task_choice", "shapes-colors")
    assert partitioned.returncode == 0, partitioned.stderr
    refused = cli("-e", "ft2", *TINY, *data, "--task_choice", "digits", "--model", "resnet26", "--backbone", "part",
                  "--last_third_only", "true")
    assert refused.returncode == 2 and "--model resnet26" in refused.stderr
    assert not (cli.cwd / "exp/ft2").exists()  # refused before the run folder exists


def test_a_missing_backbone_is_refused_before_the_run_folder_exists(cli, mini_data_dir):
    for backbone in ("nosuchrun", "exp/nosuchrun"):
        result = cli("-e", "orphan", *TINY, "--data_dir", str(mini_data_dir), "--backbone", backbone,
                     "--last_third_only", "true")
        assert result.returncode == 2 and "no run folder with checkpoints" in result.stderr
        assert not (cli.cwd / "exp/orphan").exists()


@pytest.mark.slow
def test_pipeline_backbone_stage_resumes_and_initialises_teachers_retrains_and_student(main_runner, cli,
                                                                                      mini_data_dir):
    from test_pipeline import _tiny

    from mtl.distill.objective import ProxyObjective

    args = ["-e", "p", *_tiny(mini_data_dir), "--backbone", "", "--backbone_config", "exp.mini_finetune",
            "--backbone_options.task_choice", "shapes", "--backbone_options.num_rounds", "1",
            "--backbone_options.train_iters", "12", "--backbone_options.lr_drop_steps", "[100]",
            "--teacher_options.last_third_only", "true", "--retrain_options.last_third_only", "true",
            "--random_search", "false", "--share_fixed", "[]", "--budget", "6"]
    killed = main_runner(*args, env={"MTL_FAULT": "KILL@train_step=7"})  # the backbone is the first training
    assert killed.returncode == -9, killed.stderr
    exp = main_runner.cwd / "exp"
    assert nested_status(exp, "p/backbone") == "running" and not (exp / "p/teachers").exists()
    resumed = cli("-e", "p", "--continue")
    assert resumed.returncode == 0, resumed.stderr
    assert "[p/backbone] resumed from step 5" in resumed.stderr
    backbone = _weights(exp / "p/backbone")
    for run in ("teachers/digits", "teachers/colors", "retrain/share_all/s0", "retrain/es_best/s1"):
        trained = _weights(exp / "p" / run)
        for key in ("stem.weight", "stages.0.0.conv1.weight", "stages.1.2.conv2.weight"):  # frozen: equal
            assert torch.equal(trained[key], backbone[key]), (run, key)
    search = json.loads((exp / "p/search/config.json").read_text())["options"]
    assert search["objective_options"]["student_init"] == "p/backbone"
    objective = ProxyObjective(**{**search["objective_options"], "tasks": ["digits", "colors"],
                                  "dataset": "mini_decathlon", "data_dir": str(mini_data_dir), "exp_root": str(exp)})
    _, init = objective.load("cpu")
    for b in range(4):
        assert torch.equal(init["conv1"][b], backbone[f"stages.2.{b}.conv1.weight"])
    assert torch.equal(init["final_bn"][0], backbone["final_bn.shapes.weight"])
    assert "backbone p/backbone;" in (exp / "p/table.md").read_text()
