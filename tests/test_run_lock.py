"""One process per run folder; user errors leave no run folder behind (issues 13.4 and 14.1)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO

TOY = ["--config", "exp.toy", "--device", "cpu", "--num_rounds", "2", "--train_iters", "30",
       "--checkpoint_every", "10", "--log_every", "5"]


def _start_stopped(cwd, *args, step=15):
    """main.py ARGS in a process that stops itself (SIGSTOP) after training step `step`: alive, holding its run."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MTL_FAULT": f"STOP@train_step={step}"}
    process = subprocess.Popen([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status = os.waitpid(process.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), "the holder should have stopped itself"
    return process


def _kill(process):
    os.kill(process.pid, signal.SIGKILL)
    os.waitpid(process.pid, 0)
    process.returncode = -9


@pytest.mark.slow
def test_a_live_run_is_refused_then_taken_over_when_its_process_dies(cli):
    holder = _start_stopped(cli.cwd, "-e", "r", *TOY)
    try:
        second = cli("-e", "r", "--continue")
        assert second.returncode == 2 and f"pid {holder.pid}" in second.stderr, second.stderr
        overwrite = cli("-e", "r", *TOY, "--overwrite")
        assert overwrite.returncode == 2 and f"pid {holder.pid}" in overwrite.stderr
        assert not [p for p in (cli.cwd / "exp").iterdir() if ".old-" in p.name]  # nothing moved aside
        assert "running" in cli("--list").stdout.split("runs under")[1]
    finally:
        _kill(holder)
    listed = cli("--list").stdout
    assert "stopped (no process)" in listed
    resumed = cli("-e", "r", "--continue")  # the dead holder's lock is taken over
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((cli.cwd / "exp/r/results.json").read_text())["steps"] == 60


def test_list_shows_runs_moved_aside(cli):
    assert cli("-e", "m", *TOY, "--num_rounds", "1").returncode == 0
    assert cli("-e", "m", *TOY, "--num_rounds", "1", "--overwrite").returncode == 0
    runs = cli("--list").stdout.split("runs under")[1]
    assert "m.old-" in runs


@pytest.mark.parametrize("extra,fragment", [
    (["--device", "cuda"], "no CUDA device"),
    (["--partition", "missing_partition.json"], "does not exist"),
    (["--dataset", "decathlon", "--task_choice", "1"], "--prepare decathlon"),
])
def test_user_errors_on_inputs_create_no_run_folder(cli, mini_data_dir, extra, fragment):
    if extra[:2] == ["--device", "cuda"] and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = ["-e", "u", "--config", "exp.mini_dec", "--data_dir", str(mini_data_dir), *extra]
    if "--device" not in extra:
        args += ["--device", "cpu"]
    result = cli(*args)
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert not (cli.cwd / "exp" / "u").exists()


def test_a_data_dir_that_is_a_file_is_a_user_error(cli):
    (cli.cwd / "afile").write_text("x")
    result = cli("-e", "u", "--config", "exp.mini_dec", "--device", "cpu", "--data_dir", "afile")
    assert result.returncode == 2 and "is a file" in result.stderr
    assert not (cli.cwd / "exp" / "u").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_prepared_read_only_data_folder_is_usable(cli, tmp_path, mini_data_dir):
    from mtl.jobs.inputs import check_data
    import shutil

    ro = tmp_path / "ro"
    shutil.copytree(mini_data_dir / "mini_decathlon", ro / "mini_decathlon")
    (ro / "mini_decathlon" / ".lock").unlink(missing_ok=True)
    for folder in (ro / "mini_decathlon", ro):
        folder.chmod(0o555)
    try:
        from mtl.data.prepare import ensure_embedded

        check_data("mini_decathlon", str(ro), ["digits"])
        assert ensure_embedded("mini_decathlon", ro) == ro / "mini_decathlon"
    finally:
        for folder in (ro, ro / "mini_decathlon"):
            folder.chmod(0o755)


def test_a_run_that_failed_before_its_first_checkpoint_starts_again(cli, mini_data_dir):
    args = ["-e", "f", "--config", "exp.mini_finetune", "--device", "cpu", "--data_dir", str(mini_data_dir),
            "--width", "0.25", "--input_res", "24", "--init_from", "no_such_run"]
    first = cli(*args)
    assert first.returncode == 2 and "no_such_run" in first.stderr
    again = cli(*args)
    assert again.returncode == 2, again.stderr
    assert "already exists" not in again.stderr and "starting it again" in again.stderr


def test_continue_without_a_checkpoint_says_it_starts_from_step_0(cli):
    assert cli("-e", "c", *TOY, "--num_rounds", "1").returncode == 0
    import shutil

    shutil.rmtree(cli.cwd / "exp/c/checkpoints")
    (cli.cwd / "exp/c/status.json").write_text('{"state": "interrupted"}')
    resumed = cli("-e", "c", "--continue")
    assert resumed.returncode == 0 and "starting from step 0" in resumed.stderr
