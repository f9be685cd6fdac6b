"""A candidate's score from a stacked population run equals its score evaluated alone (same seed)."""

import pytest

from distill_helpers import TASKS, tiny_cache, train_tiny_teachers
from mtl.distill.population import evaluate_population
from mtl.distill.proxy import evaluate_candidate
from mtl.meta.partition import preset

SEEDS = [1, 2, 3, 1]


@pytest.fixture(scope="session")
def teachers(mini_data_dir, tmp_path_factory):
    return train_tiny_teachers(tmp_path_factory.getbasetemp() / "distill_exp", mini_data_dir)


@pytest.fixture(scope="module")
def alone(teachers, mini_data_dir):
    """(cache, schedule, partitions, each candidate evaluated on its own)."""
    features, schedule = tiny_cache(teachers, mini_data_dir, steps=24)
    partitions = [preset(name, len(TASKS), seed=s) for name, s in
                  [("share_all", 0), ("independent", 0), ("random", 4), ("random", 9)]]
    for p in partitions:
        p.tasks = list(TASKS)
    singles = [evaluate_candidate(features, p, s, schedule) for p, s in zip(partitions, SEEDS)]
    return features, schedule, partitions, singles


@pytest.mark.parametrize("stack, max_population", [("grouped", 0), ("grouped", 3), ("vmap", 0)])
def test_population_equals_single_evaluations(alone, stack, max_population):
    features, schedule, partitions, singles = alone
    together = evaluate_population(features, partitions, SEEDS, schedule, stack=stack, max_population=max_population)
    for result, single in zip(together, singles):
        assert result["score"] == pytest.approx(single["score"], abs=1e-9)
        assert result["accuracy"] == pytest.approx(single["accuracy"], abs=1e-9)
        for task in TASKS:
            assert result["loss"][task] == pytest.approx(single["loss"][task], rel=1e-4)
