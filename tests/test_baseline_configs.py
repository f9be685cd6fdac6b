"""The original's baseline configs: single_task_baselines, curriculum_baselines, es_hyperparams.

Each is checked against the original's definition (its config/exps and config/cmd files), then run on the
mini-decathlon with only size overrides (and the tiny teachers as the ImageNet backbone / proxy teachers).
"""

import json

import numpy as np
import pytest
from distill_helpers import train_tiny_teachers

from mtl.config.cli import parse_args, resolve_new
from mtl.jobs.trial_objective import trial_slug
from mtl.jobs.search_setup import build_optimizer
from mtl.meta.results_store import ResultsStore

ORIGINAL_TASKS = ["aircraft", "cifar100", "daimlerpedcls", "dtd", "gtsrb", "vgg-flowers", "omniglot", "svhn", "ucf101"]


def _resolved(config, *args):
    job, opts, _ = resolve_new(parse_args(["--config", config, *args]))
    return job, opts


def _candidates(opts):
    return build_optimizer(opts, opts.build_space()).ask()


def test_single_task_baselines_are_the_originals_three_variants_per_task_three_trials():
    _, opts = _resolved("exp.single_task_baselines")
    pop = _candidates(opts)
    assert opts.objective == "train" and opts.objective_options["config"] == "exp.finetune"
    assert len(pop) == 9 * 3 * 3 == opts.budget
    assert pop[2].id == "trial_0/aircraft_scratch" and pop[-1].id == "trial_2/ucf101_scratch"
    by_id = {c.id: c for c in pop}
    assert by_id["trial_1/svhn_last_third"].params == {"task_choice": "svhn"}
    assert by_id["trial_1/svhn_full"].params == {"task_choice": "svhn", "last_third_only": False}
    # the original's scratch: --imagenet_pretrained 0 --last_third_only 0 --num_rounds 30 --drop_lr_iters 100000
    assert by_id["trial_0/dtd_scratch"].params == {"task_choice": "dtd", "backbone": "none", "last_third_only": False,
                                                   "num_rounds": 30, "lr_drop_steps": [100000]}
    assert {c.id.split("/")[1].rsplit("_", 1)[0].removesuffix("_last") for c in pop} == set(ORIGINAL_TASKS)
    assert len({c.seed for c in pop if c.id.startswith("trial_0/")}) == 1  # a trial's variants share a seed


def test_curriculum_baselines_are_the_originals_4x4_log_grid():
    _, opts = _resolved("exp.curriculum_baselines")
    points = [(c.params["curriculum_temperature"], c.params["curriculum_bias"]) for c in _candidates(opts)]
    assert opts.objective_options["config"] == "exp.dec" and opts.budget == 16 == len(points)
    temperatures, biases = np.geomspace(0.05, 2, 4), np.geomspace(0.01, 0.5, 4)
    assert np.allclose(points, [(t, b) for t in temperatures for b in biases])


def test_es_hyperparams_is_the_originals_random_search_over_es_settings():
    _, opts = _resolved("exp.es_hyperparams")
    space = {b.name: (b.low, b.high, b.scale, b.integer) for b in opts.build_space().blocks}
    assert space == {"learning_rate": (0.01, 1, "log", False), "momentum": (0.5, 0.99, "linear", False),
                     "delta_size": (0.01, 0.15, "log", False), "num_deltas": (8, 12, "linear", True),
                     "num_to_use": (8, 12, "linear", True)}
    assert (opts.optimizer, opts.budget, opts.objective) == ("random", 50, "search")
    assert opts.objective_options == {"config": "exp.es_dist", "options": {"budget": 5000}}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory, mini_data_dir):
    """An experiment root holding the tiny teachers (digits, shapes, colors; width 0.25, 24 px), the same
    root the distillation tests use (the teachers are trained once per session)."""
    root = tmp_path_factory.getbasetemp() / "distill_exp"
    train_tiny_teachers(root, mini_data_dir)
    return root


TRAIN_SIZES = {"width": 0.25, "input_res": 24, "batch_size": 16, "train_iters": 2, "num_rounds": 1,
               "val_max_images": 16, "eval_batch_size": 64, "prefetch": 0, "in_memory": False,
               "checkpoint_every": 1000, "backbone": "teachers/shapes"}


def _common(root, data_dir):
    return ["--exp_root", str(root), "--dataset", "mini_decathlon", "--task_choice", "digits-colors",
            "--data_dir", str(data_dir), "--device", "cpu"]


def _rows(path):
    with ResultsStore(path / "results.sqlite") as store:
        return store.evaluations()


@pytest.mark.slow
def test_single_task_baselines_run_tiny(cli, tiny_root, mini_data_dir):
    result = cli("-e", "stb", "--config", "exp.single_task_baselines", *_common(tiny_root, mini_data_dir),
                 "--optimizer_options.trials", "1", "--budget", "6", "--objective_options.options",
                 json.dumps(TRAIN_SIZES))
    assert result.returncode == 0, result.stderr
    rows = _rows(tiny_root / "stb")
    assert [r.candidate_id for r in rows] == [f"trial_0/{t}_{v}" for t in ("digits", "colors")
                                              for v in ("last_third", "full", "scratch")]
    assert all(r.ok for r in rows)
    for row in rows:
        trial = _trial_options(tiny_root / "stb", row)
        assert trial["task_choice"] == row.params["task_choice"] and trial["model"] == "resnet26"
        scratch = row.candidate_id.endswith("scratch")
        assert trial["backbone"] == ("none" if scratch else "teachers/shapes")
        assert trial["last_third_only"] is row.candidate_id.endswith("last_third")
        assert trial["num_rounds"] == (30 if scratch else 1)


def _trial_options(search, row):
    return json.loads((search / "trials" / trial_slug(row.params, row.seed) / "config.json").read_text())["options"]


@pytest.mark.slow
def test_curriculum_baselines_run_tiny(cli, tiny_root, mini_data_dir):
    result = cli("-e", "cb", "--config", "exp.curriculum_baselines", *_common(tiny_root, mini_data_dir),
                 "--optimizer_options.steps", "2", "--budget", "4", "--objective_options.options",
                 json.dumps(TRAIN_SIZES))
    assert result.returncode == 0, result.stderr
    rows = _rows(tiny_root / "cb")
    assert all(r.ok for r in rows) and len(rows) == 4
    for row in rows:
        trial = _trial_options(tiny_root / "cb", row)
        assert (trial["curriculum_temperature"], trial["curriculum_bias"]) == (
            row.params["curriculum_temperature"], row.params["curriculum_bias"])
        assert trial["curriculum"] == "train_accuracy" and trial["model"] == "partitioned_resnet26"
    assert sorted(r.params["curriculum_temperature"] for r in rows) == pytest.approx([0.05, 0.05, 2.0, 2.0])


@pytest.mark.slow
def test_es_hyperparams_run_tiny(cli, tiny_root, mini_data_dir):
    child = {"budget": 6, "optimizer_options": {"init_random": 2},
             "objective_options": {"teachers": "teachers", "steps": 8, "val_images": 32}}
    result = cli("-e", "esh", "--config", "exp.es_hyperparams", *_common(tiny_root, mini_data_dir),
                 "--budget", "2", "--hyperparameters", json.dumps(  # sizes: 1-2 ES pairs instead of 8-12
                     ["learning_rate 0.1 0.01 1 log 0", "momentum 0.9 0.5 0.99 linear 0",
                      "delta_size 0.1 0.01 0.15 log 0", "num_deltas 2 1 2 linear 1", "num_to_use 2 1 2 linear 1"]),
                 "--objective_options.options", json.dumps(child))
    assert result.returncode == 0, result.stderr
    rows = _rows(tiny_root / "esh")
    assert len(rows) == 2 and all(r.ok for r in rows)
    for row in rows:
        search = tiny_root / "esh" / "trials" / trial_slug(row.params, row.seed)
        options = json.loads((search / "config.json").read_text())["options"]
        es = options["optimizer_options"]
        assert es["learning_rate"] == row.params["learning_rate"] and es["delta_size"] == row.params["delta_size"]
        assert es["num_to_use"] == min(row.params["num_to_use"], row.params["num_deltas"])
        assert es["nesterov"] is True and es["init_random"] == 2 and options["objective"] == "proxy"
        children = _rows(search)
        last = max(c.generation for c in children)
        assert row.score == pytest.approx(np.mean([c.score for c in children if c.generation == last]))
