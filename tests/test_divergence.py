"""Divergence stops clearly (issue 14.2): skipped non-finite steps, status 'diverged', the last good checkpoint."""

import copy
import json

import pytest
import torch

from mtl.util.checkpoint import CheckpointStore

TINY = ["--config", "exp.mini_finetune", "--device", "cpu", "--width", "0.25", "--input_res", "16",
        "--batch_size", "8", "--val_max_images", "40", "--eval_batch_size", "100", "--prefetch", "0",
        "--num_rounds", "2", "--train_iters", "10", "--checkpoint_every", "2", "--lr_drop_steps", "1000"]


def _all_finite(state):
    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_all_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(_all_finite(v) for v in state)
    return True


@pytest.mark.parametrize("method", ["naive", "gradnorm"])
def test_an_lr_blow_up_stops_as_diverged_and_continues_from_the_last_good_checkpoint(cli, mini_data_dir, method):
    # The LR jumps x1e7 at step 12 (a "drop" by 1e-7): finite until then, so round 1's checkpoint is good.
    args = [*TINY, "--data_dir", str(mini_data_dir), "--num_rounds", "3", "--lr_drop_steps", "12",
            "--lr_drop_factor", "1e-7", "--checkpoint_every", "100", "--divergence_patience", "3",
            "--mtl_method", method]
    if method != "naive":
        args += ["--config", "exp.mini_dec", "--task_choice", "0-2"]
    result = cli("-e", "d", *args)
    assert result.returncode == 1, result.stderr
    assert "diverged" in result.stderr and "--lr" in result.stderr and "last good checkpoint is step 10" \
        in result.stderr
    run = cli.cwd / "exp/d"
    assert json.loads((run / "status.json").read_text())["state"] == "diverged"
    assert not (run / "results.json").exists()
    step, state = CheckpointStore(run / "checkpoints").load_latest()
    assert step == 10 and _all_finite(state["model"]) and _all_finite(state["method"])
    resumed = cli("-e", "d", "--continue", "--lr_drop_factor", "10")  # allowed after a divergence
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "status.json").read_text())["state"] == "done"


def test_a_huge_lr_from_the_start_stops_as_diverged(cli, mini_data_dir):
    result = cli("-e", "h", *TINY, "--data_dir", str(mini_data_dir), "--lr", "1e6")
    assert result.returncode == 1 and "training diverged" in result.stderr
    assert json.loads((cli.cwd / "exp/h/status.json").read_text())["state"] == "diverged"


@pytest.mark.parametrize("method", ["gradnorm", "famo", "uncertainty", "rotograd", "mgda", "cagrad", "imtl_g",
                                    "aligned_mtl"])
def test_a_nan_loss_skips_the_step_and_leaves_model_optimizer_and_method_untouched(mini_data_dir, method):
    from mtl.data.domains import get_dataset
    from mtl.methods import build_method
    from mtl.models.factory import build_model
    from mtl.train.method_step import MethodNet, TaskBatches, _adapts, multi_task_step
    from mtl.train.optim import make_sgd

    torch.manual_seed(0)
    tasks = ["digits", "shapes"]
    spec = get_dataset("mini_decathlon")
    model = build_model("resnet26", [spec.domain(t) for t in tasks], width=0.25)
    method = build_method(method, 2)
    optimizer = make_sgd(model.parameters(), 0.1, 0.9, 1e-4, True)
    loader = TaskBatches(mini_data_dir / "mini_decathlon", tasks, 0, batch_size=8, input_res=16, prefetch=0)
    net = MethodNet(model, model, method, tasks, split=method.sources == ("representation",) or _adapts(method))
    multi_task_step(net, model, method, optimizer, next(loader), source="shared", amp=False)  # a normal step
    saved = [copy.deepcopy(x.state_dict()) for x in (model, optimizer, method)]
    batches = next(loader)
    images, labels = batches["shapes"]
    batches["shapes"] = (torch.full_like(images, float("nan")), labels)
    metrics, info = multi_task_step(net, model, method, optimizer, batches, source="shared", amp=False)
    loader.close()
    assert info is None and not metrics["shapes"]["finite"]
    for before, module in zip(saved, (model, optimizer, method)):
        after = module.state_dict()
        _equal(before, after)


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        for x, y in zip(a, b):
            _equal(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("args,fragment", [
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--momentum", "nan"], "--momentum"),
    (["--momentum", "-1"], "--momentum"),
    (["--weight_decay", "-1"], "--weight_decay"),
    (["--width", "inf"], "--width"),
    (["--lr_drop_factor", "-10"], "--lr_drop_factor"),
    (["--lr_drop_factor", "0"], "--lr_drop_factor"),
    (["--val_max_images", "-5"], "--val_max_images"),
    (["--eval_batch_size", "0"], "--eval_batch_size"),
    (["--method_options.alpha", "nan", "--mtl_method", "gradnorm"], "alpha"),
])
def test_bad_numbers_exit_2_at_parse_time(cli, args, fragment):
    result = cli("-e", "x", "--config", "exp.mini_finetune", "--device", "cpu", *args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not (cli.cwd / "exp/x").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--objective_options.noise", "nan"], "noise"),
    (["--objective_options.noise", "abc"], "noise"),
    (["--optimizer_options.learning_rate", "abc"], "learning_rate"),
    (["--optimizer_options.delta_size", "inf"], "delta_size"),
    (["--cpus_per_eval", "nan"], "--cpus_per_eval"),
])
def test_bad_search_numbers_exit_2(cli, args, fragment):
    result = cli("-e", "x", "--config", "exp.es_debug", "--device", "cpu", *args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr


def _always_failing(space):
    def evaluate(params, seed):
        raise RuntimeError("this objective always fails")
    return evaluate


def test_a_search_whose_evaluations_all_failed_ends_failed(cli):
    from mtl.meta.objectives import OBJECTIVES

    if "always_fails" not in OBJECTIVES:
        OBJECTIVES.register("always_fails")(_always_failing)
    result = cli("-e", "s", "--config", "exp.es_debug", "--device", "cpu", "--budget", "4", "--objective",
                 "always_fails", "--objective_options", "{}", "--max_retries", "0", "--optimizer", "random",
                 "--optimizer_options", "{}")
    assert result.returncode == 2, result.stderr
    assert "every one of the 4 evaluations failed" in result.stderr and "always fails" in result.stderr
    assert json.loads((cli.cwd / "exp/s/status.json").read_text())["state"] == "failed"


def test_a_distillation_with_a_huge_lr_stops_as_diverged(cli, mini_data_dir, tmp_path_factory):
    from distill_helpers import RES, TASKS, WIDTH, train_tiny_teachers

    teachers = train_tiny_teachers(tmp_path_factory.getbasetemp() / "distill_exp", mini_data_dir)
    result = cli("-e", "dd", "--config", "exp.mini_dist", "--device", "cpu", "--task_choice", "-".join(TASKS),
                 "--width", str(WIDTH), "--input_res", str(RES), "--steps", "16", "--val_images", "48",
                 "--checkpoint_every", "10", "--log_every", "5", "--data_dir", str(mini_data_dir),
                 "--teachers", str(teachers), "--lr", "1e30")
    assert result.returncode == 1, result.stderr
    assert "distillation diverged" in result.stderr
    assert json.loads((cli.cwd / "exp/dd/status.json").read_text())["state"] == "diverged"
