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


def test_families_design_rows_share_one_size_and_differ_in_structure(tmp_path):
    """The design check's rows: all at half of the channels; the wrong pairs share only across families."""
    import importlib.util

    import numpy as np

    from mtl.data.domains import task_families
    from mtl.meta.partition import resolve_partition
    from mtl.meta.structure import family_overlap

    spec = importlib.util.spec_from_file_location("families_design", REPO / "benchmarks" / "families_design.py")
    design = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(design)
    plan = design.partitions(tmp_path, [0, 1])
    assert [row for row, _ in plan] == ["families", "share_fixed s=1/3", "wrong pairs 1", "wrong pairs 2", "random"]
    tasks = ["digits", "photos", "mnist", "photo_details"]
    families = task_families("mini_families", tasks)
    overlaps = {}
    for (row, _), runs in plan.items():
        assert [s for s, _ in runs] == [0, 1]
        for _, value in runs:
            partition = resolve_partition(value, tasks, families=families)
            assert np.allclose(partition.channel_use(), 0.5, atol=0.02)
            overlaps[row] = family_overlap(partition, families, 32)
    assert overlaps["families"]["cross"] == 0.0 and overlaps["wrong pairs 1"]["within"] == 0.0
    assert overlaps["wrong pairs 2"]["within"] == 0.0
