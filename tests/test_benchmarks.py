"""The benchmark scripts still run (tiny sizes) and print their tables; their figures are not checked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO


def _run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True,
                            text=True, timeout=300, cwd=REPO, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("layers", ["last_stage_conv1", "last_stage"])
def test_proxy_throughput_prints_rates_for_each_stack(layers):
    out = _run("proxy_throughput.py", "--device", "cpu", "--width", "0.125", "--input_res", "16", "--tasks", "2",
               "--steps", "6", "--val_images", "16", "--populations", "1,2", "--threads", "1", "--layers", layers)
    rows = [line.split() for line in out.splitlines() if line.startswith(("grouped", "vmap"))]
    assert [(r[0], r[1]) for r in rows] == [("grouped", "1"), ("grouped", "2"), ("vmap", "1"), ("vmap", "2")]
    assert all(float(r[5]) > 0 for r in rows)  # evaluations per hour


def test_train_throughput_prints_model_only_and_end_to_end_rates(mini_data_dir):
    out = _run("train_throughput.py", "--device", "cpu", "--size", "16", "--batch", "4", "--steps", "2",
               "--warmup", "1", "--width", "0.125", "--threads", "1", "--data_dir", str(mini_data_dir))
    assert "single-task ResNet-26:" in out and "sliced/masked" in out
    assert "single-task end to end from" in out


def test_data_loader_prints_rates(tmp_path):
    out = _run("data_loader.py", "--images", "64", "--steps", "3", "--batch", "8", "--workdir", str(tmp_path))
    assert "img/s" in out and "prepare (decode + write)" in out


@pytest.mark.slow
def test_pool_throughput_prints_a_rate_per_backend():
    pytest.importorskip("ray")
    out = _run("pool_throughput.py", "--workers", "2", "--generation", "2", "--repeats", "1", "--steps", "2",
               "--val_images", "4", "--width", "0.125", "--input_res", "16", "--tasks", "2")
    rows = [line.split() for line in out.splitlines() if line.startswith(("inprocess", "local", "ray"))]
    assert [r[0] for r in rows] == ["inprocess", "local", "ray"] and all(float(r[1]) > 0 for r in rows)
