"""Data-parallel training (mtl/train/distributed.py): N gloo ranks step as one process on the global batch.

The method tests spawn 2 real torch.distributed processes (gloo, CPU) on a tiny BatchNorm-free graph
model with dropout in its heads (per-rank BatchNorm is not the global batch's; dropout masks are; see
tests/ddp_helpers.py); the end-to-end tests run main.py under torchrun.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from torch.nn import functional as F

from mtl.data.batches import MultiDomainLoader
from mtl.models.dropout import batch_dropout
from mtl.train.distributed import SINGLE, state_checksums, straight_through
from mtl.util.checkpoint import CheckpointStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp_helpers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def test_the_shards_of_a_batch_are_the_one_process_batch(mini_data_dir):
    kwargs = dict(batch_size=8, seed=3, policy="uniform", input_res=16, prefetch=0)
    folder = mini_data_dir / "mini_decathlon"
    whole = MultiDomainLoader(folder, ["digits", "shapes"], **kwargs)
    shards = [MultiDomainLoader(folder, ["digits", "shapes"], shard=(r, 2), **kwargs) for r in range(2)]
    for _ in range(3):
        task, images, labels = next(whole)
        parts = [next(s) for s in shards]
        assert {p[0] for p in parts} == {task}
        assert torch.equal(torch.cat([p[1] for p in parts]), images)
        assert torch.equal(torch.cat([p[2] for p in parts]), labels)
    assert shards[0].state_dict()["streams"] == whole.state_dict()["streams"]


_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA"))]


@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("shape", [(8, 5), (8, 3, 4, 4)])
def test_each_ranks_dropout_mask_is_its_rows_of_the_one_process_mask(shape, device):
    x = torch.randn(*shape, device=device)
    torch.manual_seed(0)
    whole = batch_dropout(x, 0.3, True)  # one process (CPU: F.dropout itself)
    after = torch.rand(3, device=device)
    for rank in range(2):
        torch.manual_seed(0)
        rows = slice(rank * 4, rank * 4 + 4)
        assert torch.equal(batch_dropout(x[rows], 0.3, True, shard=(rank, 2)), whole[rows])
        assert torch.equal(torch.rand(3, device=device), after)  # every rank's generator where one process's is
    if device == "cpu":
        torch.manual_seed(0)
        assert torch.equal(F.dropout(x, 0.3, True), whole)
    assert 0 < int((whole == 0).sum()) < x.numel()


def test_a_loss_keeps_its_gradient_and_takes_the_global_value():
    x = torch.tensor(2.0, requires_grad=True)
    (loss,) = straight_through([x * 3], torch.tensor([10.0]))
    loss.backward()
    assert float(loss.detach()) == 10.0 and float(x.grad) == 3.0


def test_state_checksums_tell_states_apart():
    a = {"w": torch.tensor([1.0, 2.0]), "n": 3, "opt": [{"m": torch.zeros(2)}]}
    b = {"w": torch.tensor([2.0, 1.0]), "n": 3, "opt": [{"m": torch.zeros(2)}]}
    assert state_checksums(a).keys() == {"w", "n", "opt[0].m"}
    assert state_checksums(a)["w"] != state_checksums(b)["w"]  # same sum, other order
    assert SINGLE.any_(5) == 5 and SINGLE.gather("x") == ["x"]


@pytest.fixture(scope="module")
def two_rank_states(tmp_path_factory):
    """Every case of ddp_helpers.CASES trained by 2 spawned gloo ranks: {case: [rank0, rank1]}."""
    # Known flake: about one start in ten, a rank aborted with "terminate called without an active
    # exception" (SIGABRT, no Python error; file:// and tcp:// stores alike, only under pytest's output
    # capture). The same abort of torchrun ranks came from the interpreter's teardown at exit (3 of 45
    # runs with a pipe, 0 of 60 once ranks end with exit_process); rank_main ends that way now too. The one
    # retry on that signal alone stays until the fixture is shown free of it; every assertion still applies.
    for attempt in range(2):
        out = tmp_path_factory.mktemp("ddp")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            mp.start_processes(ddp_helpers.rank_main, args=(2, f"tcp://127.0.0.1:{port}", str(out)), nprocs=2,
                               start_method="spawn", join=True)
            break
        except mp.ProcessExitedException as err:
            if attempt or err.signal_name != "SIGABRT" or list(out.glob("error-rank*.txt")):
                raise
    states = {n: [torch.load(out / f"case{n}-rank{r}.pt", weights_only=True) for r in range(2)]
              for n in range(len(ddp_helpers.CASES))}
    states["probe"] = [(out / f"probe-rank{r}.txt").read_text() for r in range(2)]
    states["overflow"] = [(out / f"overflow-rank{r}.txt").read_text() for r in range(2)]
    return states


@pytest.mark.slow
def test_an_fp16_overflow_on_one_rank_skips_the_step_on_every_rank(two_rank_states):
    assert two_rank_states["overflow"] == ["raised", "raised"]


@pytest.mark.slow
def test_the_rank_check_names_the_state_that_differs_on_every_rank(two_rank_states):
    assert two_rank_states["probe"] == ["probe differs between ranks at step 7: differs"] * 2


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(ddp_helpers.CASES)),
                         ids=[f"{m}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}"
                              f"{'-scaled' if s else ''}" for m, o, s in ddp_helpers.CASES])
def test_two_ranks_step_as_one_process_on_the_global_batch(two_rank_states, case):
    """The model BatchNorm-free (ddp_helpers.NODES): that is what makes the comparison exact; the
    ranks' sums differ from one process's only by float32 rounding (<= 1e-6 relative)."""
    name, options, loss_scale = ddp_helpers.CASES[case]
    one = ddp_helpers.train(name, options, loss_scale)
    ranks = two_rank_states[case]
    for key, value in one["model"].items():
        for rank, state in enumerate(ranks):
            assert torch.allclose(state["model"][key], value, rtol=1e-6, atol=1e-7), (name, key, rank)
    # FAMO's logits step (Adam) on differences of log losses before and after the step, which cancel:
    # the losses' float32 rounding (~1e-7) comes out ~5e-6 in the logits (measured), not a DDP effect
    rtol = 2e-5 if name == "famo" else 1e-6
    for key, value in one["method"].items():  # rotations, weights, norms: one process's
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert torch.allclose(ranks[0]["method"][key], value, rtol=rtol, atol=1e-7), (name, key)
    _assert_same(ranks[0]["method"], ranks[1]["method"], f"{name} method state, rank 0 vs 1")
    assert state_checksums(ranks[0]["model"]) == state_checksums(ranks[1]["model"])
    if loss_scale:
        assert ranks[0]["scaler"] == ranks[1]["scaler"] == one["scaler"]


def _assert_same(a, b, where):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        for n, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{n}]")
    else:
        assert a == b, where


# ---- main.py under torchrun ---------------------------------------------------------------------------
TINY = ["--device", "cpu", "--batch_size", "8", "--val_max_images", "24", "--eval_batch_size", "100",
        "--prefetch", "0", "--train_iters", "3", "--checkpoint_every", "100", "--log_every", "1",
        "--lr_drop_steps", "100"]


def _config(folder: Path, method: str) -> str:
    path = folder / f"{method}.json"
    values = {"dataset": "mini_decathlon", "task_choice": "-".join(ddp_helpers.TASKS), "model": "graph",
              "graph_model": ddp_helpers.NODES, "input_res": 16, "mtl_method": method, "in_memory": True}
    path.write_text(json.dumps({"job": "train", "options": values}))
    return str(path)


def _main(cwd: Path, args: list[str], ranks: int = 2, fault: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("MTL_FAULT", None)
    env.update(fault or {})
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                "--standalone"] if ranks > 1 else [sys.executable]
    return subprocess.run([*launcher, str(REPO / "main.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _model(cwd: Path, run: str) -> tuple[int, dict]:
    step, state = CheckpointStore(cwd / "exp" / run / "checkpoints").load_latest()
    return step, state["model"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sum", "naive", "rotograd"])
def test_torchrun_trains_as_one_process_writes_on_rank_0_and_continues(tmp_path, mini_data_dir, method):
    args = ["--config", _config(tmp_path, method), "--data_dir", str(mini_data_dir), *TINY]
    one = _main(tmp_path, ["-e", "one", *args, "--num_rounds", "2"], ranks=1)
    assert one.returncode == 0, one.stderr[-3000:]
    first = _main(tmp_path, ["-e", "ddp", *args, "--num_rounds", "1", "--check_ranks", "true"])  # + the rank check
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _main(tmp_path, ["-e", "ddp", "--continue", "--num_rounds", "2"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 3" in resumed.stderr
    (step_one, a), (step_ddp, b) = _model(tmp_path, "one"), _model(tmp_path, "ddp")
    assert step_one == step_ddp == 6
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6), key
    run = tmp_path / "exp" / "ddp"
    log = (run / "log.txt").read_text()
    assert log.count("starting train run ddp in") == 1 and log.count("continuing train run ddp in") == 1
    assert "data-parallel over 2 processes" in log
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # one per launch: rank 0's
    config = json.loads((run / "config.json").read_text())
    assert config["command"][:2] == ["torchrun", "--nproc_per_node=2"]
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    if method == "naive":  # every rank drew the same task at every step: one process's counts
        assert json.loads((run / "results.json").read_text())["steps"] == 6


@pytest.mark.slow
def test_torchrun_user_error_exits_2_on_every_rank_before_anything_exists(tmp_path, mini_data_dir):
    args = ["--config", _config(tmp_path, "sum"), "--data_dir", str(mini_data_dir), *TINY, "--num_rounds", "1"]
    odd = _main(tmp_path, ["-e", "odd", *args, "--batch_size", "7"])  # every rank finds it
    assert odd.returncode != 0 and odd.stderr.count("error: --batch_size 7 is the global batch") == 1
    assert "exitcode: 2" in odd.stderr  # torchrun stops the other rank once one has exited
    assert not (tmp_path / "exp" / "odd").exists()
    taken = tmp_path / "exp" / "taken"  # only rank 0 looks at the folder: the ranks agree
    taken.mkdir(parents=True)
    (taken / "config.json").write_text("{}")
    refused = _main(tmp_path, ["-e", "taken", *args])
    assert refused.returncode != 0 and refused.stderr.count("error: run 'taken' already exists") == 1
    assert "exitcode: 2" in refused.stderr and sorted(p.name for p in taken.iterdir()) == ["config.json"]


@pytest.mark.slow
def test_a_signal_on_one_rank_checkpoints_once_and_stops_every_rank(tmp_path, mini_data_dir):
    args = ["--config", _config(tmp_path, "sum"), "--data_dir", str(mini_data_dir), *TINY, "--num_rounds", "2",
            "--check_ranks", "true"]  # and the debug check passes in the real loop
    stopped = _main(tmp_path, ["-e", "ddp", *args], fault={"MTL_FAULT": "TERM@train_step=2", "MTL_FAULT_RANK": "1"})
    assert stopped.returncode != 0 and "exitcode: 143" in stopped.stderr, stopped.stderr[-3000:]
    run = tmp_path / "exp" / "ddp"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and status["signal"] == "SIGTERM"
    assert CheckpointStore(run / "checkpoints").latest_step() == 2
    resumed = _main(tmp_path, ["-e", "ddp", "--continue"])
    assert resumed.returncode == 0 and "resumed from step 2" in resumed.stderr, resumed.stderr[-3000:]
    one = _main(tmp_path, ["-e", "one", *args], ranks=1)
    assert one.returncode == 0, one.stderr[-3000:]
    (_, a), (_, b) = _model(tmp_path, "one"), _model(tmp_path, "ddp")
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6), key


@pytest.mark.slow
def test_the_death_of_one_rank_stops_the_job_and_continue_ends_as_an_uninterrupted_run(tmp_path, mini_data_dir):
    args = ["--config", _config(tmp_path, "naive"), "--data_dir", str(mini_data_dir), *TINY, "--num_rounds", "2",
            "--checkpoint_every", "2"]
    killed = _main(tmp_path, ["-e", "killed", *args], fault={"MTL_FAULT": "KILL@train_step=5", "MTL_FAULT_RANK": "1"})
    assert killed.returncode != 0 and "exitcode: -9" in killed.stderr, killed.stderr[-3000:]
    assert "Continue from the last checkpoint with:\n  torchrun --nproc_per_node=2 main.py -e killed" in killed.stderr
    assert CheckpointStore(tmp_path / "exp" / "killed" / "checkpoints").latest_step() == 4  # not 5
    resumed = _main(tmp_path, ["-e", "killed", "--continue"])
    assert resumed.returncode == 0 and "resumed from step 4" in resumed.stderr, resumed.stderr[-3000:]
    straight = _main(tmp_path, ["-e", "straight", *args])
    assert straight.returncode == 0, straight.stderr[-3000:]
    (step_a, a), (step_b, b) = _model(tmp_path, "straight"), _model(tmp_path, "killed")
    assert step_a == step_b == 6
    for key in a:
        assert torch.equal(a[key], b[key]), key
