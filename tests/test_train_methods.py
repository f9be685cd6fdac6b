"""The train job with MTL methods on the mini-decathlon (CPU): end to end, exact resume, naive unchanged."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtl.util.checkpoint import CheckpointStore

TASKS = ["digits", "shapes", "colors"]
TINY = ["--config", "exp.mini_dec", "--device", "cpu", "--width", "0.25", "--input_res", "16",
        "--batch_size", "8", "--val_max_images", "40", "--eval_batch_size", "100", "--prefetch", "0",
        "--task_choice", "-".join(TASKS), "--train_iters", "3", "--checkpoint_every", "100", "--log_every", "1",
        "--lr_drop_steps", "100"]


def _latest(cwd, run):
    return CheckpointStore(cwd / "exp" / run / "checkpoints").load_latest()


def _results(cwd, run):
    return json.loads((cwd / "exp" / run / "results.json").read_text())


def _assert_equal_states(a, b, where="state"):
    """Bitwise equality of nested dicts / lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal_states(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for n, (x, y) in enumerate(zip(a, b)):
            _assert_equal_states(x, y, f"{where}[{n}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("method,extra", [
    ("dwa", []),  # loss history rolled by end_round
    ("famo", []),  # logits updated by after_step (losses of the same batches after the step)
    ("rotograd", []),  # rotations between the representation and the heads, their Adam state
])
def test_stateful_method_trains_and_resumes_exactly_in_process(cli, mini_data_dir, method, extra):
    args = [*TINY, "--data_dir", str(mini_data_dir), "--mtl_method", method, *extra]
    assert cli("-e", "straight", *args, "--num_rounds", "2").returncode == 0
    assert cli("-e", "split", *args, "--num_rounds", "1").returncode == 0
    resumed = cli("-e", "split", "--continue", "--num_rounds", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 3" in resumed.stderr
    (step_a, a), (step_b, b) = _latest(cli.cwd, "straight"), _latest(cli.cwd, "split")
    assert step_a == step_b == 6
    _assert_equal_states(a["model"], b["model"])
    _assert_equal_states(a["method"], b["method"])
    results = _results(cli.cwd, "straight")
    assert results["method"]["name"] == method and results["images_per_step"] == 8 * len(TASKS)
    assert results["perf"]["seconds_per_step"] > 0 and "peak_memory_mb" in results["perf"]
    state = a["method"]
    if method == "dwa":
        assert len(state["_extra_state"]["history"]) == 2  # end_round ran after each round
    if method == "famo":
        assert state["logits"].abs().sum() > 0 and not state["_extra_state"]["pending"]
    if method == "rotograd":
        assert state["skew"].abs().sum() > 0


def test_method_choice_and_weights_are_logged(cli, mini_data_dir):
    result = cli("-e", "gradnorm", *TINY, "--data_dir", str(mini_data_dir), "--num_rounds", "1",
                 "--mtl_method", "gradnorm", "--grad_source", "last_shared", "--method_options.alpha", "1.0")
    assert result.returncode == 0, result.stderr
    assert "'alpha': 1.0" in result.stderr
    assert "gradient source last_shared (model declares last_shared) | heads by the method" in result.stderr
    assert "step 1: gradient source last_shared, heads weighted, task weights digits=1 " in result.stderr
    events = EventAccumulator(str(cli.cwd / "exp" / "gradnorm"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"method/weight/{t}" for t in TASKS} <= tags and "digits/train/loss" in tags


@pytest.mark.parametrize("args,fragment", [
    (["--mtl_method", "pcgrd"], "did you mean 'pcgrad'"),
    (["--mtl_method", "gradnorm", "--method_options.alpah", "1"], "did you mean 'alpha'"),
    (["--grad_source", "representation"], "no effect with --mtl_method naive"),
    (["--model", "graph"], "--model graph and --graph_model go together"),
])
def test_method_option_errors_exit_2_before_the_run_starts(cli, mini_data_dir, args, fragment):
    result = cli("-e", "bad", *TINY, "--data_dir", str(mini_data_dir), *args)
    assert result.returncode == 2 and fragment in result.stderr
    assert not (cli.cwd / "exp" / "bad").exists()


def test_naive_default_is_the_original_per_task_loop(cli, mini_data_dir):
    """--mtl_method naive (the default) equals the original loop written out: one task per step, its SGD."""
    from mtl.data.domains import get_dataset
    from mtl.data.batches import MultiDomainLoader
    from mtl.jobs.train import EMA_DECAY
    from mtl.jobs.train_options import TrainOptions
    from mtl.jobs.train_setup import build_train_model
    from mtl.train.task_step import train_step
    from mtl.train.optim import lr_at, make_sgd, set_lr
    from mtl.util.rng import seed_everything

    tasks = ["digits", "shapes"]
    args = [*TINY, "--data_dir", str(mini_data_dir), "--task_choice", "-".join(tasks), "--num_rounds", "1",
            "--train_iters", "8", "--lr_drop_steps", "5", "--partition", "share_fixed:0.5"]
    assert cli("-e", "naive", *args).returncode == 0
    saved = _latest(cli.cwd, "naive")[1]["model"]

    opts = TrainOptions(data_dir=str(mini_data_dir), dataset="mini_decathlon", task_choice="-".join(tasks),
                        width=0.25, input_res=16, batch_size=8, dropout=0.1, lr=0.1, weight_decay=5e-4,
                        partition="share_fixed:0.5", lr_drop_steps=[5])
    seed_everything(0)
    spec = get_dataset("mini_decathlon")
    model = build_train_model(opts, [spec.domain(t) for t in tasks])
    optimizers = {t: make_sgd(model.parameters_for(t), opts.lr, 0.9, opts.weight_decay, True) for t in tasks}
    loader = MultiDomainLoader(mini_data_dir / "mini_decathlon", tasks, batch_size=8, seed=0,
                               policy="train_accuracy", input_res=16, prefetch=0)
    ema, seen = {t: 0.0 for t in tasks}, {t: 0 for t in tasks}
    for step in range(8):
        task, images, labels = next(loader)
        set_lr(optimizers[task], lr_at(step, opts.lr, [5], 10.0))
        # the original zeroes gradients (other tasks' BatchNorms in this optimizer still decay)
        accuracy = train_step(model, optimizers[task], task, images, labels, amp=False,
                              set_to_none=False)["accuracy"]
        seen[task] += 1
        ema[task] = EMA_DECAY * ema[task] + (1 - EMA_DECAY) * accuracy
        loader.update_task_accuracy(task, min(1.0, ema[task] / (1 - EMA_DECAY ** seen[task])))
    _assert_equal_states(saved, model.state_dict())


def test_combined_update_keeps_partition_masks(mini_data_dir):
    """Entries no task may update stay put through weight decay and momentum; the others move."""
    from mtl.data.domains import get_dataset
    from mtl.methods import build_method
    from mtl.models import build_model
    from mtl.models.contract import update_guard
    from mtl.train.method_step import MethodNet, TaskBatches, multi_task_step
    from mtl.train.optim import make_sgd

    torch.manual_seed(0)
    spec = get_dataset("mini_decathlon")
    tasks = ["digits", "shapes"]
    model = build_model("partitioned_resnet26", [spec.domain(t) for t in tasks], width=0.25,
                        partition="independent", partition_layers="last_stage")
    union = {}
    for task in tasks:
        for weight, keep in model.update_masks(task):
            union[id(weight)] = (weight, keep | union[id(weight)][1] if id(weight) in union else keep)
    assert any(not bool(keep.all()) for _, keep in union.values())
    first = {id(w): keep for w, keep in model.update_masks(tasks[0])}
    before = {key: w.detach().clone() for key, (w, _) in union.items()}
    with update_guard(model, tasks[:1]):  # a guard for one task restores the other task's entries
        with torch.no_grad():
            for weight, _ in union.values():
                weight.add_(1.0)
    for key, (weight, _) in union.items():
        moved = weight.detach() != before[key]
        assert torch.equal(moved, first[key].expand_as(moved))

    method = build_method("pcgrad", 2)
    optimizer = make_sgd(model.parameters(), 0.1, 0.9, 1e-2, True)
    batches = TaskBatches(mini_data_dir / "mini_decathlon", tasks, 0, batch_size=8, input_res=16, prefetch=0)
    before = {id(w): w.detach().clone() for w, _ in union.values()}
    net = MethodNet(model, model, method, tasks, split=False)
    for _ in range(2):
        multi_task_step(net, model, method, optimizer, next(batches), source="shared", amp=False)
    for weight, keep in union.values():
        changed = weight.detach() != before[id(weight)]
        assert not (changed & ~keep).any()  # nobody's entries: untouched
        assert changed[keep.expand_as(weight)].float().mean() > 0.9
    batches.close()


@pytest.mark.slow
def test_stateful_method_resumes_exactly_after_sigkill(main_runner, cli, mini_data_dir):
    """Only the killed run needs its own process: the others run in this one (same folder)."""
    args = [*TINY, "--data_dir", str(mini_data_dir), "--mtl_method", "uncertainty", "--num_rounds", "2",
            "--train_iters", "4", "--checkpoint_every", "3"]
    straight = cli("-e", "straight", *args)
    assert straight.returncode == 0, straight.stderr
    killed = main_runner("-e", "killed", *args, env={"MTL_FAULT": "KILL@train_step=7"})
    assert killed.returncode == -9
    resumed = cli("-e", "killed", "--continue")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 6" in resumed.stderr
    assert main_runner.cwd == cli.cwd
    (_, a), (_, b) = _latest(cli.cwd, "straight"), _latest(cli.cwd, "killed")
    _assert_equal_states(a["model"], b["model"])
    _assert_equal_states(a["method"], b["method"])
    assert a["method"]["log_var"].abs().sum() > 0
