"""Nested runs (skip when done, continue when cut short, refuse changed settings) and the pipeline:
the demo end to end, and a SIGKILL mid-pipeline + --continue that skips finished stages and ends
with the same table."""

import json
import re

import pytest

from mtl.config.options import build_options
from mtl.errors import UserError
from mtl.runner.nested import nested_status, run_nested
from mtl.config.groups import layered
from mtl.jobs.toy import ToyOptions
from mtl.meta.results_store import ResultsStore


def _toy(**values):
    return build_options(ToyOptions, {"num_rounds": 2, "train_iters": 10, "device": "cpu", **values}, "test")


def test_nested_run_is_skipped_when_done_and_refused_when_changed(tmp_path):
    first = run_nested("toy", _toy(), tmp_path, "p/stage")
    assert nested_status(tmp_path, "p/stage") == "done"
    assert (tmp_path / "p/stage/log.txt").read_text().count("starting toy run p/stage in") == 1
    assert run_nested("toy", _toy(), tmp_path, "p/stage") == first  # skipped: results.json as is
    assert "continuing" not in (tmp_path / "p/stage/log.txt").read_text()
    more = run_nested("toy", _toy(num_rounds=3), tmp_path, "p/stage")  # resume-safe: continues
    assert more["steps"] == 30
    with pytest.raises(UserError, match="hidden differ"):
        run_nested("toy", _toy(num_rounds=3, hidden=8), tmp_path, "p/stage")


def test_nested_run_continues_an_unfinished_run(tmp_path):
    straight = run_nested("toy", _toy(), tmp_path, "a")
    run_nested("toy", _toy(num_rounds=1), tmp_path, "b")
    status = json.loads((tmp_path / "b/status.json").read_text())
    (tmp_path / "b/status.json").write_text(json.dumps({**status, "state": "running"}))  # as after a SIGKILL
    assert run_nested("toy", _toy(), tmp_path, "b") == straight


def test_stage_options_merge_groups_and_dotted_keys():
    from mtl.jobs.search_options import SearchOptions

    config = {"optimizer.init_random": 32, "optimizer.num_deltas": 8, "budget": 10}
    layer = {"optimizer_options.num_deltas": 4, "budget": 5, "backend": "local"}  # old and new spellings
    assert layered(SearchOptions, [config, layer], "test") == {
        "optimizer_options": {"init_random": 32, "num_deltas": 4}, "budget": 5, "backend": "local"}


def test_bad_pipeline_options_are_user_errors(cli):
    result = cli("-e", "p", "--config", "exp.demo", "--baselines", "share_fixed")
    assert result.returncode == 2 and "share_fixed amounts go in --share_fixed" in result.stderr


def _tiny(data_dir, parallel_stages=1):
    """exp.demo shrunk further: 2 tasks, width 0.125, 16 px, a dozen steps per stage, 12 evaluations; the
    trainings one at a time in this process unless `parallel_stages`."""
    return ["--config", "exp.demo", "--data_dir", str(data_dir), "--device", "cpu", "--dataset", "mini_decathlon",
            "--task_choice", "digits-colors", "--parallel_stages", str(parallel_stages), "--retrain_seeds", "2",
            "--train.width", "0.125", "--train.input_res", "16", "--train.val_max_images", "64",
            "--train.checkpoint_every", "5", "--teacher.train_iters", "12", "--teacher.lr_drop_steps", "[100]",
            "--retrain.num_rounds", "1", "--retrain.train_iters", "16", "--retrain.lr_drop_steps", "[100]",
            "--objective.steps", "8", "--objective.batch_size", "4", "--objective.val_images", "32", "--budget", "12",
            "--search.optimizer.init_random", "4", "--search.optimizer.num_deltas", "2",
            "--search.optimizer.num_to_use", "1", "--random_batch_size", "4",
            "--baselines", "share_all", "--share_fixed", "0.5"]


STAGES = ["teachers/digits", "teachers/colors", "search", "random_search", "proxy_scores",
          *(f"retrain/{v}/s{k}" for v in ("share_all", "share_fixed_0.5", "random_best", "es_best") for k in (0, 1))]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, mini_data_dir):
    """One uninterrupted tiny demo, run in-process."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO)) if str(REPO) not in sys.path else None
    import main as main_module

    root = tmp_path_factory.mktemp("demo") / "exp"
    assert main_module.run_cli(["-e", "demo", "--exp_root", str(root), *_tiny(mini_data_dir)]) == 0
    return root


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_the_table(demo):
    for stage in STAGES:
        assert nested_status(demo, f"demo/{stage}") == "done", stage
    table = json.loads((demo / "demo/table.json").read_text())
    labels = [row["label"] for row in table["rows"]]
    assert labels == ["single-task (teachers)", "share_all", "share_fixed s=0.5", "random search best",
                      "ES best (searched)"]
    assert all(row["proxy_score"] is not None for row in table["rows"][1:])
    assert [row["channels"] for row in table["rows"][:3]] == pytest.approx([1.0, 1.0, 0.75])
    assert [len(row["seeds"]) for row in table["rows"]] == [1, 2, 2, 2, 2]
    text = (demo / "demo/table.md").read_text()
    assert "width 0.125, 16 px inputs" in text and "| ES best (searched) |" in text and " ± " in text
    assert (demo / "demo/search/best_partition.json").exists() and (demo / "demo/pareto.png").stat().st_size > 0


@pytest.mark.slow
def test_continue_of_a_done_pipeline_skips_every_stage(demo, mini_data_dir, capsys):
    import main as main_module

    before = {s: (demo / f"demo/{s}/results.json").stat().st_mtime_ns for s in STAGES}
    capsys.readouterr()
    assert main_module.run_cli(["-e", "demo", "--exp_root", str(demo), "--continue"]) == 0
    out = capsys.readouterr()
    assert "| ES best (searched) |" in out.out
    assert not re.search(r"(starting|continuing) \w+ run demo/\S+ in", out.err)  # no stage started or continued
    assert {s: (demo / f"demo/{s}/results.json").stat().st_mtime_ns for s in STAGES} == before


@pytest.mark.slow
def test_sigkill_mid_pipeline_then_continue_gives_the_same_table(main_runner, cli, demo, mini_data_dir):
    # Teachers stop at step 12, so the first training to reach step 14 is retrain/share_all/s0
    # (its last checkpoint: step 10).
    killed = main_runner("-e", "demo", *_tiny(mini_data_dir), env={"MTL_FAULT": "KILL@train_step=14"})
    assert killed.returncode == -9, killed.stderr
    exp = main_runner.cwd / "exp"
    assert [nested_status(exp, f"demo/{s}") for s in STAGES[:6]] == ["done"] * 5 + ["running"]
    done = {s: (exp / f"demo/{s}/results.json").stat().st_mtime_ns for s in STAGES[:5]}
    resumed = cli("-e", "demo", "--continue")
    assert resumed.returncode == 0, resumed.stderr
    assert "[demo/retrain/share_all/s0] resumed from step 10" in resumed.stderr
    assert {s: (exp / f"demo/{s}/results.json").stat().st_mtime_ns for s in STAGES[:5]} == done
    table = json.loads((exp / "demo/table.json").read_text())
    assert table == json.loads((demo / "demo/table.json").read_text())


@pytest.mark.slow
def test_proxy_search_killed_mid_generation_loses_and_repeats_nothing(main_runner, cli, demo, mini_data_dir):
    """The demo's teachers serve a tiny proxy search; killed after 6 of 12 rows (mid-generation)."""
    args = ["--config", "exp.es_dist", "--exp_root", str(demo), "--dataset", "mini_decathlon", "--task_choice",
            "digits-colors", "--data_dir", str(mini_data_dir), "--device", "cpu", "--objective_options.teachers",
            "demo/teachers", "--objective_options.steps", "8", "--objective_options.batch_size", "4",
            "--objective_options.val_images", "32", "--optimizer_options.init_random", "4",
            "--optimizer_options.num_deltas", "2", "--optimizer_options.num_to_use", "1", "--budget", "12"]
    assert cli("-e", "proxy_ref", *args).returncode == 0
    killed = main_runner("-e", "proxy_kill", *args, env={"MTL_FAULT": "KILL@search_record=6"})
    assert killed.returncode == -9, killed.stderr

    def rows(run):
        with ResultsStore(demo / run / "results.sqlite") as store:
            return [(e.candidate_id, e.params, e.seed, e.score, e.attempts) for e in store.evaluations()]

    before = rows("proxy_kill")
    assert len(before) == 6
    assert cli("-e", "proxy_kill", "--exp_root", str(demo), "--continue").returncode == 0
    after, reference = rows("proxy_kill"), rows("proxy_ref")
    assert after[:6] == before  # nothing recorded is lost or redone
    assert [r[:3] for r in after] == [r[:3] for r in reference] and all(r[4] == 1 for r in after)
    # the 2 unrecorded candidates of generation 1 ran as a smaller population: same scores up to rounding
    assert [r[3] for r in after] == pytest.approx([r[3] for r in reference], abs=1e-4)


@pytest.mark.slow
def test_sigterm_in_parallel_stages_checkpoints_them_and_continue_gives_the_same_table(main_runner, cli, demo,
                                                                                       mini_data_dir):
    """Teachers and retrains two at a time in worker processes; the first two retrains (teachers stop at
    step 12) get SIGTERM at step 14 in their workers. Continued, the table equals the sequential demo's."""
    stopped = main_runner("-e", "demo", *_tiny(mini_data_dir, parallel_stages=2),
                          env={"MTL_FAULT": "TERM@train_step=14"})
    assert stopped.returncode == 143, stopped.stderr
    assert "2 at a time" in stopped.stderr
    exp = main_runner.cwd / "exp"
    assert nested_status(exp, "demo/retrain/share_all/s0") == "interrupted"
    assert nested_status(exp, "demo/retrain/es_best/s1") == "missing"  # queued stages were not started
    assert "--continue" in stopped.stderr
    resumed = cli("-e", "demo", "--continue", "--parallel_stages", "1")  # in-process, so its log is captured here
    assert resumed.returncode == 0, resumed.stderr
    assert "[demo/retrain/share_all/s0] resumed from step 14" in resumed.stderr
    table = json.loads((exp / "demo/table.json").read_text())
    assert table == json.loads((demo / "demo/table.json").read_text())
