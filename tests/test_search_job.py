"""The search job through main.py: debug objective end to end, SIGKILL / SIGTERM + continue exact,
option errors, local and Ray backends equal to in-process, and the train objective (fixed sharing)."""

import json
import signal

import numpy as np
import pytest

from mtl.meta.results_store import ResultsStore

# 3 tasks (12 coordinates), init 16 + 8 pairs per generation: generations end at 16, 32, 48, 64.
ARGS = ["--config", "exp.es_debug", "--task_choice", "0-1-2", "--budget", "64", "--objective_options.noise", "0.05",
        "--optimizer_options.init_random", "16", "--optimizer_options.num_deltas", "8",
        "--optimizer_options.num_to_use", "4", "--optimizer_options.delta_size", "0.05"]


def snapshot(run_dir):
    """What the search decided (rows minus worker names and timings, optimizer states) and its best."""
    with ResultsStore(run_dir / "results.sqlite") as store:
        rows = [(e.candidate_id, e.params, e.seed, e.status, e.score, e.per_task, e.resource, e.resource_per_task,
                 e.attempts) for e in store.evaluations()]
        states = store.states()
    return rows, states, json.loads((run_dir / "best_partition.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted search, run in-process once for the module."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO)) if str(REPO) not in sys.path else None
    import main as main_module

    root = tmp_path_factory.mktemp("ref") / "exp"
    assert main_module.run_cli(["-e", "ref", "--exp_root", str(root), *ARGS]) == 0
    return root / "ref"


def test_search_job_writes_store_report_and_tensorboard(reference):
    results = json.loads((reference / "results.json").read_text())
    assert results["evaluations"] == 64 and results["failed"] == 0 and results["reason"] == "budget"
    for name in ("report.md", "best_partition.json", "pareto_front.json", "progress.png", "pareto_front.png",
                 "best_partition.png", "results.sqlite"):
        assert (reference / name).stat().st_size > 0, name
    assert "Pareto front" in (reference / "report.md").read_text()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(reference)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"search/best_score", "search/score_mean", "search/resource/aircraft", "search/score/aircraft"} <= tags
    best = [s.value for s in events.Scalars("search/best_score")]
    assert best == sorted(best) and len(best) == 4  # one point per generation, never decreasing


def test_best_partition_is_usable_with_partition(reference):
    from mtl.data.domains import DECATHLON
    from mtl.models.factory import build_model

    tasks = [DECATHLON.domains[i] for i in (0, 1, 2)]
    model = build_model("partitioned_resnet26", tasks, width=0.125, partition=str(reference / "best_partition.json"))
    best = json.loads((reference / "best_partition.json").read_text())
    assert model.partition.raw[0] == pytest.approx(np.array(best["partition"]))


@pytest.mark.parametrize("fault,code", [("KILL@search_record=21", -signal.SIGKILL),
                                        ("TERM@search_record=37", 128 + signal.SIGTERM)], ids=["sigkill", "sigterm"])
def test_stopped_search_continues_to_the_same_state(main_runner, cli, reference, fault, code):
    killed = main_runner("-e", "s", *ARGS, env={"MTL_FAULT": fault})
    assert killed.returncode == code, killed.stderr
    with ResultsStore(main_runner.cwd / "exp/s/results.sqlite") as store:
        recorded = store.count()
    assert recorded == int(fault.rsplit("=", 1)[1])
    status = json.loads((main_runner.cwd / "exp/s/status.json").read_text())
    assert status["state"] == ("running" if "KILL" in fault else "interrupted")
    if "TERM" in fault:  # a graceful stop writes the report of what it has
        assert (main_runner.cwd / "exp/s/report.md").exists()
    resumed = cli("-e", "s", "--continue")
    assert resumed.returncode == 0, resumed.stderr
    assert snapshot(cli.cwd / "exp/s") == snapshot(reference)


def test_budget_grows_on_continue_and_settings_cannot_change(cli):
    args = [a if a != "64" else "16" for a in ARGS]
    assert cli("-e", "g", *args).returncode == 0
    changed = cli("-e", "g", "--continue", "--optimizer_options.delta_size", "0.1")
    assert changed.returncode == 2 and "cannot change optimizer_options" in changed.stderr
    assert cli("-e", "g", "--continue", "--budget", "40").returncode == 0
    results = json.loads((cli.cwd / "exp/g/results.json").read_text())
    assert results["evaluations"] == 40 and results["generations"] == 2  # 16 + 16 + 8 of the third


@pytest.mark.parametrize("extra,message", [
    (["--optimizer_options.learning_rat", "0.1"], "its options: init_random"),
    (["--optimizer", "cmaes"], "unknown meta-optimizer 'cmaes'"),
    (["--objective", "debgu"], "did you mean 'debug'"),
    (["--objective_options.nois", "0.1"], "unknown nois"),
    (["--search_partition", "false"], "search space is empty"),
    (["--hyperparameters", "lr 0.1 0.01 1 log"], "expected 'name default low high scale is_int'"),
])
def test_bad_search_options_are_user_errors(cli, extra, message):
    result = cli("-e", "bad", *ARGS, *extra)
    assert result.returncode == 2 and message in result.stderr.replace("\n", " "), result.stderr


def test_hyperparameter_file_in_the_original_format(cli, tmp_path):
    ranges = tmp_path / "es.txt"
    ranges.write_text("--learning_rate 1e-1 .01 1 log 0\n--num_deltas 8 8 12 linear 1\n")
    result = cli("-e", "hp", "--config", "exp.es_debug", "--search_partition", "false", "--hyperparameters_file",
                 str(ranges), "--optimizer", "random", "--optimizer_options", "{batch_size: 8}", "--budget", "16")
    assert result.returncode == 0, result.stderr
    with ResultsStore(cli.cwd / "exp/hp/results.sqlite") as store:
        params = [e.params for e in store.evaluations()]
    assert all(0.01 <= p["learning_rate"] <= 1 and p["num_deltas"] in (8, 9, 10, 11, 12) for p in params)


@pytest.mark.slow
def test_local_backend_gives_the_in_process_results(cli, reference):
    result = cli("-e", "loc", *ARGS, "--backend", "local", "--num_workers", "2")
    assert result.returncode == 0, result.stderr
    assert snapshot(cli.cwd / "exp/loc") == snapshot(reference)
    with ResultsStore(cli.cwd / "exp/loc/results.sqlite") as store:
        assert len({e.worker for e in store.evaluations()}) == 2


@pytest.mark.slow
def test_ray_backend_gives_the_in_process_results(cli, reference, ray_cluster):
    result = cli("-e", "ray", *ARGS, "--backend", "ray")
    assert result.returncode == 0, result.stderr
    assert snapshot(cli.cwd / "exp/ray") == snapshot(reference)
    with ResultsStore(cli.cwd / "exp/ray/results.sqlite") as store:
        assert all(e.worker.startswith("ray:") for e in store.evaluations())


@pytest.mark.slow
def test_fixed_sharing_grid_trains_one_run_per_value(cli, mini_data_dir):
    result = cli("-e", "fs", "--config", "exp.fixed_sharing_baselines", "--dataset", "mini_decathlon",
                 "--task_choice", "digits-colors", "--data_dir", str(mini_data_dir), "--device", "cpu",
                 "--optimizer_options.steps", "2", "--budget", "2", "--objective_options.config", "exp.mini_dec",
                 "--objective_options.options", '{"width": 0.125, "input_res": 16, "num_rounds": 1, "train_iters": 8, '
                 '"val_max_images": 40, "prefetch": 0, "lr_drop_steps": [100]}')
    assert result.returncode == 0, result.stderr
    with ResultsStore(cli.cwd / "exp/fs/results.sqlite") as store:
        rows = store.evaluations()
    assert [e.params["share_amt"] for e in rows] == [0.0, 1.0] and all(e.ok for e in rows)
    assert [e.resource for e in rows] == pytest.approx([0.5, 1.0])  # (1 - s) / 2 private + s shared
    trials = sorted(p.parent.name for p in (cli.cwd / "exp/fs/trials").glob("*/results.json"))
    assert len(trials) == 2 and trials[0].startswith("share_amt=0_")


@pytest.mark.parametrize("config", ["exp.es_debug", "exp.es_dist", "exp.random_search", "exp.fixed_sharing_baselines",
                                    "exp.single_task_baselines", "exp.curriculum_baselines", "exp.es_hyperparams",
                                    "exp.demo", "exp.pipeline"])
def test_search_and_pipeline_configs_resolve(config):
    from mtl.config.cli import parse_args, resolve_new

    job, opts, _ = resolve_new(parse_args(["--config", config]))
    assert job.name in ("search", "pipeline")
    if job.name == "search":
        assert opts.build_space().dim > 0 or opts.optimizer == "runner"  # a runner's variants are fixed
