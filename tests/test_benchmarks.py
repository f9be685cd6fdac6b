"""The benchmark scripts still run (tiny sizes) and print their tables; their figures are not checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO


def _run(script: str, *args: str) -> str:
    # PYTHONPATH: this checkout's mtl, not an editable install's
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True,
                            text=True, timeout=300, cwd=REPO,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
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


@pytest.mark.slow
def test_ddp_scaling_times_each_rank_count_interleaved(tmp_path):
    out = _run("ddp_scaling.py", "--device", "cpu", "--width", "0.125", "--size", "16", "--batch", "4",
               "--steps", "1", "--warmup", "1", "--repeats", "2", "--json", str(tmp_path / "ddp.json"))
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2"] and all(float(r[1]) > 0 for r in rows)
    assert [r["repeats"] for r in json.loads((tmp_path / "ddp.json").read_text())["rows"]] == [2, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_gpu_suite_without_a_gpu_says_so_and_measures_nothing(tmp_path):
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert result.returncode == 0 and "no CUDA GPU is visible" in result.stdout
    assert not (tmp_path / "out").exists()


def test_suite_table_has_a_row_per_number_and_names_missing_results(tmp_path):
    (tmp_path / "ddp_scaling.json").write_text(json.dumps(
        {"device": "cpu", "rows": [{"ranks": 2, "images_per_s": 30.0, "spread": 1.1}]}))
    (tmp_path / "train.json").write_text(json.dumps({"config": {"steps": "2"}, "model_only": {"single_task": 5.0}}))
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "suite_table.py"), str(tmp_path),
                             "train", "ddp_scaling", "proxy"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| train | model_only.single_task | 5 |" in lines and "| ddp_scaling | rows[ranks=2].spread | 1.1 |" in lines
    assert any(line.startswith("| proxy | (no result") for line in lines) and "config" not in result.stdout
    assert (tmp_path / "suite.md").read_text() == result.stdout
    assert set(json.loads((tmp_path / "suite.json").read_text())) == {"train", "ddp_scaling"}


def test_optimizer_comparison_command_lines_are_accepted_by_the_search_job(tmp_path):
    """Each optimizer's options in the comparison are valid search options (a bad one exits 2 in --help)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("optimizer_comparison", REPO / "benchmarks" / "optimizer_comparison.py")
    comparison = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(comparison)
    assert set(comparison.OPTIMIZERS) == {"es", "random", "cma", "ngopt"}
    for name, options in comparison.OPTIMIZERS.items():
        result = subprocess.run([sys.executable, str(REPO / "main.py"), "--config", "exp.es_dist", *options,
                                 "--fixed_fraction", "0.5", "--help"], capture_output=True, text=True, cwd=tmp_path,
                                timeout=120)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"


def test_cpu_scaling_prints_the_speedup_of_processes_run_at_once():
    out = _run("cpu_scaling.py", "--procs", "2", "--iters", "2", "--repeats", "1")
    [row] = [line for line in out.splitlines() if line.startswith("| 2 |")]
    speedup = float(row.split("|")[3].split("x")[0])
    assert speedup > 0


def _load_benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_teacher_alignment_sees_channels_not_information():
    """Two teachers computing the same features in other channels: the proxy's channel-by-channel view
    says they disagree, the basis-free CKA says they hold the same information."""
    align = _load_benchmark("teacher_alignment")
    a = torch.randn(40, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    assert align.channel_correlation(a, a) == pytest.approx(1.0)
    assert align.channel_correlation(a, -a) == pytest.approx(-1.0)
    shuffled = a[:, [3, 4, 5, 0, 1, 2]]
    assert abs(align.channel_correlation(a, shuffled)) < 0.5
    assert align.linear_cka(a, shuffled) == pytest.approx(1.0)
    other = torch.randn(40, 6, 3, 3, generator=torch.Generator().manual_seed(1))
    assert align.linear_cka(a, other) < 0.5
