"""Proxy validation: rank statistics, and the job's report recomputed from its saved raw data."""

import json

import numpy as np
import pytest

from distill_helpers import RES, TASKS, WIDTH, train_tiny_teachers
from mtl.distill.validation import rank_correlations, seed_agreement, summarize


@pytest.fixture(scope="session")
def teachers(mini_data_dir, tmp_path_factory):
    return train_tiny_teachers(tmp_path_factory.getbasetemp() / "distill_exp", mini_data_dir)


def test_rank_correlations_and_bootstrap_interval():
    x = np.arange(12.0)
    perfect = rank_correlations(x, 2 * x + 1, bootstrap=200)
    assert perfect["spearman"]["value"] == pytest.approx(1.0) and perfect["kendall"]["value"] == pytest.approx(1.0)
    assert perfect["spearman"]["ci"] == pytest.approx([1.0, 1.0])
    noisy = rank_correlations(x, x + np.random.default_rng(0).normal(0, 4, 12), bootstrap=200, seed=1)
    low, high = noisy["spearman"]["ci"]
    assert low < noisy["spearman"]["value"] < high <= 1.0
    assert rank_correlations(x, -x, bootstrap=50)["kendall"]["value"] == pytest.approx(-1.0)


def test_the_noise_ceiling_uses_every_pair_of_training_seeds():
    x = np.arange(8.0)
    agreeing = seed_agreement(np.stack([x, x + 0.5, 2 * x], axis=1))
    assert agreeing["pairs"] == {"0-1": pytest.approx(1.0), "0-2": pytest.approx(1.0), "1-2": pytest.approx(1.0)}
    assert agreeing["mean_of_seeds_reliability"] == pytest.approx(1.0) == agreeing["mean_of_seeds_ceiling"]
    assert list(seed_agreement(np.stack([x, x], axis=1), [3, 7])["pairs"]) == ["3-7"]  # named by seed
    # Seeds 0 and 1 agree, seed 2 ranks the other way: the first pair alone would say 1.0.
    split = seed_agreement(np.stack([x, x, -x], axis=1))
    assert split["mean_pair_spearman"] == pytest.approx(-1 / 3) and split["mean_of_seeds_reliability"] is None
    r = seed_agreement(np.stack([x, x + np.r_[0, 0, 0, 0, 0, 0, 3, -3]], axis=1))["mean_pair_spearman"]
    assert 0 < r < 1  # two seeds: reliability of their mean is 2r / (1 + r)
    assert seed_agreement(np.stack([x, x + np.r_[0, 0, 0, 0, 0, 0, 3, -3]], axis=1))[
        "mean_of_seeds_reliability"] == pytest.approx(2 * r / (1 + r))


@pytest.mark.slow
def test_validation_job_reports_correlations_recomputable_from_raw_data(cli, teachers, mini_data_dir):
    full = {"num_rounds": 1, "train_iters": 6, "lr_drop_steps": [100], "batch_size": 8, "val_max_images": 32,
            "eval_batch_size": 200, "prefetch": 0, "checkpoint_every": 100, "log_every": 50}
    result = cli("-e", "check", "--config", "exp.mini_distillation_sampling", "--device", "cpu",
                 "--data_dir", str(mini_data_dir), "--teachers", str(teachers), "--task_choice", "-".join(TASKS),
                 "--width", str(WIDTH), "--input_res", str(RES), "--steps", "12", "--val_images", "32",
                 "--num_partitions", "2", "--budgets", json.dumps({"short": {"steps": 6, "batch_size": 8}}),
                 "--full_options", json.dumps(full), "--bootstrap", "200")
    assert result.returncode == 0, result.stderr
    run = cli.cwd / "exp" / "check"
    raw = json.loads((run / "proxy_validation.json").read_text())
    reported = json.loads((run / "results.json").read_text())
    assert len(raw["candidates"]) == 4 and set(raw["budgets"]) == {"default", "short"}
    assert summarize(raw) == {k: v for k, v in reported.items() if k not in ("raw", "report", "plot")}
    assert (run / "scatter.png").stat().st_size > 1000
    assert "Spearman" in (run / "report.md").read_text()
    assert sorted(p.name for p in (run / "full").iterdir()) == sorted(f"{c['id']}_s0" for c in raw["candidates"])
    assert "full_seed_agreement" not in reported

    # A second training seed added on --continue: only the new trainings run; the noise ceiling is reported.
    proxy_mtime = (run / "proxy_validation.json").stat().st_mtime_ns
    again = cli("-e", "check", "--continue", "--full_seeds", "0,1")
    assert again.returncode == 0, again.stderr
    assert "proxy budget" not in again.stderr  # proxy scores were kept
    raw = json.loads((run / "proxy_validation.json").read_text())
    reported = json.loads((run / "results.json").read_text())
    assert (run / "proxy_validation.json").stat().st_mtime_ns != proxy_mtime
    assert all(len(c["full"]["seed_scores"]) == 2 for c in raw["candidates"])
    assert summarize(raw) == {k: v for k, v in reported.items() if k not in ("raw", "report", "plot")}
    assert "full_seed_agreement" in reported and "the noise ceiling" in (run / "report.md").read_text()


def test_a_budget_may_compare_the_proxy_readouts_and_a_bad_one_is_refused_before_the_run(cli, tmp_path):
    from mtl.config.options import build_options
    from mtl.jobs.proxy_validation import budgets
    from mtl.jobs.proxy_validation_options import ProxyValidationOptions

    opts = build_options(ProxyValidationOptions, {"budgets": {"bn": {"proxy_readout": "teacher_bn"}}}, "test")
    assert budgets(opts)["bn"] == {"proxy_readout": "teacher_bn"}
    result = cli("-e", "pv_bad", "--exp_root", str(tmp_path), "--config", "exp.families_proxy_check",
                 "--budgets", json.dumps({"bn": {"proxy_readout": "teacher"}}))
    assert result.returncode == 2 and "proxy_readout 'teacher'" in result.stderr
    assert not (tmp_path / "pv_bad").exists()
