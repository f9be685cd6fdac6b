"""Mixed precision of the train job, on CPU: bf16 autocast close to float32, fp16 with a checkpointed
GradScaler, and the methods' Gramians in float32 or wider whatever the autocast dtype."""

from __future__ import annotations

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtl.methods.base import SharedParts
from mtl.methods.gramian import task_gradients
from mtl.util.checkpoint import CheckpointStore

TASKS = ["digits", "shapes", "colors"]
TINY = ["--config", "exp.mini_dec", "--device", "cpu", "--width", "0.25", "--input_res", "16",
        "--batch_size", "8", "--val_max_images", "24", "--eval_batch_size", "100", "--prefetch", "0",
        "--task_choice", "-".join(TASKS), "--train_iters", "3", "--checkpoint_every", "100", "--log_every", "1",
        "--lr_drop_steps", "100", "--num_rounds", "1"]
# bf16 keeps 8 bits of mantissa. Relative loss difference to float32 on this tiny ResNet, measured on
# CPU: 0.02-0.34% at step 1 (same weights, only the forward's rounding), 0.5-0.8% at step 2, 0.6-2.9% at
# step 3 (the trajectories part). Tolerances: 1% at step 1, 5% after.
FIRST_STEP_TOLERANCE, LATER_TOLERANCE = 0.01, 0.05


def _losses(run_dir) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir)).Reload()
    return {t: [e.value for e in events.Scalars(f"{t}/train/loss")] for t in TASKS}


def test_bf16_autocast_on_cpu_stays_within_tolerance_of_float32(cli, mini_data_dir):
    args = [*TINY, "--data_dir", str(mini_data_dir), "--mtl_method", "sum"]
    assert cli("-e", "fp32", *args).returncode == 0
    bf16 = cli("-e", "bf16", *args, "--amp_cpu", "true")
    assert bf16.returncode == 0, bf16.stderr
    full, half = _losses(cli.cwd / "exp" / "fp32"), _losses(cli.cwd / "exp" / "bf16")
    for task in TASKS:
        assert len(half[task]) == 3 and all(torch.isfinite(torch.tensor(half[task])))
        for step, (a, b) in enumerate(zip(full[task], half[task])):
            tolerance = FIRST_STEP_TOLERANCE if step == 0 else LATER_TOLERANCE
            assert abs(a - b) <= tolerance * a, (task, step, full[task], half[task])
        assert half[task] != full[task]  # autocast did run


def test_fp16_checkpoints_its_grad_scaler_and_resumes_exactly(cli, mini_data_dir):
    args = [*TINY, "--data_dir", str(mini_data_dir), "--amp_cpu", "true", "--amp_dtype", "fp16"]
    assert cli("-e", "straight", *args, "--num_rounds", "2").returncode == 0
    assert cli("-e", "split", *args).returncode == 0
    resumed = cli("-e", "split", "--continue", "--num_rounds", "2")
    assert resumed.returncode == 0, resumed.stderr
    (_, a), (_, b) = [CheckpointStore(cli.cwd / "exp" / r / "checkpoints").load_latest() for r in ("straight", "split")]
    assert a["scaler"] == b["scaler"] and a["scaler"]["scale"] > 0
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_fp16_with_a_combined_method_is_a_user_error(cli, mini_data_dir):
    result = cli("-e", "fp16sum", *TINY, "--data_dir", str(mini_data_dir), "--amp_dtype", "fp16",
                 "--mtl_method", "sum")
    assert result.returncode == 2 and "--amp_dtype fp16 works with --mtl_method naive only" in result.stderr
    assert not (cli.cwd / "exp" / "fp16sum").exists()


def test_gramian_is_float32_or_wider_under_bf16_autocast():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = layer(torch.randn(3, 4))
        losses = [z[:, k].square().mean() for k in range(2)]
    assert z.dtype == torch.bfloat16
    grads, _ = task_gradients(losses, SharedParts(list(layer.parameters()), representation=[z]), "representation")
    assert grads.jacobian.dtype == torch.float32 and grads.gramian().dtype == torch.float64
