"""Mixed precision of the train job, on CPU: bf16 autocast close to float32, fp16 with a checkpointed
GradScaler (naive and the combined methods: per-task gradients unscaled before the method combines them,
an overflow skipped), and the methods' Gramians in float32 or wider whatever the autocast dtype."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtl.data.domains import get_dataset
from mtl.methods import build_method
from mtl.methods.base import SharedParts
from mtl.methods.gramian import task_gradients
from mtl.models.graph_config import build_graph_model
from mtl.train.distributed import state_checksums
from mtl.train.method_step import MethodNet, _adapts, multi_task_step
from mtl.train.optim import make_sgd
from mtl.util.checkpoint import CheckpointStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp_helpers  # noqa: E402

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


@pytest.mark.parametrize("method", ["naive", "pcgrad"])
def test_fp16_checkpoints_its_grad_scaler_and_resumes_exactly(cli, mini_data_dir, method):
    args = [*TINY, "--data_dir", str(mini_data_dir), "--amp_cpu", "true", "--amp_dtype", "fp16",
            "--mtl_method", method]
    assert cli("-e", "straight", *args, "--num_rounds", "2").returncode == 0
    assert cli("-e", "split", *args).returncode == 0
    resumed = cli("-e", "split", "--continue", "--num_rounds", "2")
    assert resumed.returncode == 0, resumed.stderr
    (_, a), (_, b) = [CheckpointStore(cli.cwd / "exp" / r / "checkpoints").load_latest() for r in ("straight", "split")]
    assert a["scaler"] == b["scaler"] and a["scaler"]["scale"] > 0
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


# combined methods through the GradScaler path, on the tiny BatchNorm-free graph model of the DDP tests
SCALED = [("pcgrad", {}), ("mgda", {"source": "representation"}), ("upgrad", {}), ("nash_mtl", {}),
          ("gradnorm", {"source": "last_shared"}), ("uncertainty", {}), ("famo", {}), ("mean", {}),
          ("rotograd", {}), ("rotograd_norm", {"coop_after": 1}), ("graddrop", {"source": "representation"})]


@pytest.mark.parametrize("name,options", SCALED, ids=[f"{m}-{o.get('source', 'default')}" for m, o in SCALED])
def test_a_grad_scaler_does_not_change_a_combined_methods_update(name, options):
    """float32 with a loss scale of 2^16: the per-task gradients are unscaled before the method combines
    them, so the update is the unscaled one (to float32 rounding)."""
    plain, scaled = ddp_helpers.train(name, options), ddp_helpers.train(name, options, 2.0 ** 16)
    assert scaled["scaler"]["scale"] == 2.0 ** 16  # no overflow: every step stepped
    for key, value in plain["model"].items():
        assert torch.allclose(scaled["model"][key], value, rtol=1e-6, atol=1e-7), (name, key)
    for key, value in plain["method"].items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert torch.allclose(scaled["method"][key], value, rtol=1e-6, atol=1e-7), (name, key)


def _graph_setup(name: str, options: dict, device: str):
    """The DDP tests' tiny graph model, `name`'s method, SGD and one batch per task, on `device`."""
    torch.manual_seed(0)
    spec = get_dataset("mini_decathlon")
    model = build_graph_model(ddp_helpers.NODES, [spec.domain(t) for t in TASKS], input_res=ddp_helpers.RES)
    model.to(device)
    method = build_method(name, len(TASKS), options)
    net = MethodNet(model, model, method, TASKS, split=options.get("source") == "representation" or _adapts(method))
    optimizer = make_sgd(model.parameters(), 0.1, 0.9, 1e-3, True)
    batches = {t: (x.to(device), y.to(device)) for t, (x, y) in ddp_helpers.global_batches(1)[0].items()}
    net(batches[TASKS[0]][0], TASKS[0])  # lazily built method state (RotoGrad's rotations) exists
    net.take_representation()
    return model, method, net, optimizer, batches


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="fp16 training on a GPU"))])
@pytest.mark.parametrize("name,options", [("pcgrad", {}), ("mgda", {"source": "representation"}), ("rotograd", {}),
                                          ("uncertainty", {})])
def test_fp16_steps_a_combined_method_close_to_float32(name, options, device):
    """One step in float32 and one in fp16 autocast with a GradScaler: the same update to fp16 rounding
    (CPU, measured: 2.4e-4 to 3.5e-4 relative; tolerance 2e-2)."""
    moves = []
    for amp in (False, torch.float16):
        model, method, net, optimizer, batches = _graph_setup(name, options, device)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        scaler = torch.amp.GradScaler(device) if amp else None
        metrics, info = multi_task_step(net, model, method, optimizer, batches, source="shared", amp=amp,
                                        scaler=scaler)
        assert info is not None and all(m["finite"] for m in metrics.values())
        moves.append(torch.cat([(model.state_dict()[k] - v).flatten().float() for k, v in before.items()]))
    full, half = moves
    assert float((half - full).norm() / full.norm()) < 0.02


@pytest.mark.parametrize("name,options", [("pcgrad", {}), ("sum", {}), ("uncertainty", {}), ("rotograd", {}),
                                          ("mgda", {"source": "representation"})])
def test_an_fp16_overflow_skips_the_step_keeps_the_method_state_and_halves_the_scale(name, options):
    """fp16 autocast on CPU with a scale of 2^40: the backward overflows (a per-task gradient for the
    gradient methods, the update for the loss-weighting ones); nothing moves, the scale halves, the
    growth count restarts, and the step is not a divergence."""
    model, method, net, optimizer, batches = _graph_setup(name, options, "cpu")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40, growth_interval=1)
    model_before, method_before = copy.deepcopy(model.state_dict()), copy.deepcopy(method.state_dict())
    metrics, info = multi_task_step(net, model, method, optimizer, batches, source="shared", amp=torch.float16,
                                    scaler=scaler)
    assert info is None and all(m["finite"] for m in metrics.values())  # skipped, not diverged
    assert scaler.state_dict()["scale"] == 2.0 ** 39 and scaler.state_dict()["_growth_tracker"] == 0
    for key, value in model_before.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert state_checksums(method.state_dict()) == state_checksums(method_before)
    for _ in range(40):  # the scale backs off until the fp16 backward fits, then steps
        metrics, info = multi_task_step(net, model, method, optimizer, batches, source="shared",
                                        amp=torch.float16, scaler=scaler)
        if info is not None:
            break
    assert info is not None and method.step_count == 1 and scaler.get_scale() < 2.0 ** 39
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in model_before.items())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gramian_is_float32_or_wider_under_autocast(dtype):
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 4)
    with torch.autocast("cpu", dtype=dtype):
        z = layer(torch.randn(3, 4))
        losses = [z[:, k].square().mean() for k in range(2)]
    assert z.dtype == dtype
    grads, _ = task_gradients(losses, SharedParts(list(layer.parameters()), representation=[z]), "representation")
    assert grads.jacobian.dtype == torch.float32 and grads.gramian().dtype == torch.float64
    scaled = [loss.detach() + (loss * 2.0 ** 10 - (loss * 2.0 ** 10).detach()) for loss in losses]
    z.grad = None
    unscaled, _ = task_gradients(scaled, SharedParts(list(layer.parameters()), representation=[z], loss_scale=2.0 ** 10),
                                 "representation")
    assert torch.allclose(unscaled.jacobian, grads.jacobian, rtol=1e-3)  # fp16/bf16 rounding of the backward
