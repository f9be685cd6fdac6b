"""Nevergrad optimizers: CMA beats random on the debug objective, seeded asks, failures told as the worst
score, and a SIGKILLed search job continued to the uninterrupted run's rows (resume by replay, no pickle)."""

import json

import numpy as np
import pytest

from mtl.meta.objectives import DebugObjective
from mtl.meta.optimizers import create_optimizer
from mtl.meta.search_loop import run_search
from mtl.meta.space import Hyperparameter, PartitionBlock, Space
from mtl.meta.results_store import Evaluation, ResultsStore

pytest.importorskip("nevergrad")

SPACE = Space((PartitionBlock(("a", "b", "c")), Hyperparameter("lr", 1e-3, 1.0, "log")))  # 13 coordinates


def _told(candidates, scores):
    return [Evaluation(c.id, c.generation, c.position, c.params, c.seed, status="failed" if s is None else "ok",
                       score=s) for c, s in zip(candidates, scores)]


def _best_after(optimizer, objective, budget):
    """A bare ask/evaluate/tell loop (no store): the best score seen within `budget` evaluations."""
    best, used = -np.inf, 0
    while used < budget:
        candidates = optimizer.ask()
        scores = [objective(c.params, c.seed)["score"] for c in candidates]
        used += len(candidates)
        best = max(best, *scores)
        optimizer.tell(_told(candidates, scores))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_cma_ends_closer_to_the_optimum_than_random_at_equal_budget(seed):
    objective = DebugObjective(SPACE, target_seed=seed)
    cma = create_optimizer("nevergrad", SPACE, seed=seed, optimizer="CMA", population=8, budget=64)
    random = create_optimizer("random", SPACE, seed=seed, batch_size=8)
    assert _best_after(cma, objective, 64) > _best_after(random, objective, 64)


def test_asks_are_seeded_repeatable_and_in_the_unit_cube():
    def first_two(seed):
        opt = create_optimizer("nevergrad", SPACE, seed=seed, optimizer="TwoPointsDE", population=4, budget=40)
        first = opt.ask()
        assert opt.ask() == first  # asked once per generation, then repeated
        opt.tell(_told(first, [float(np.sin(i)) for i in range(4)]))
        return first + opt.ask()

    a, b, other = first_two(3), first_two(3), first_two(4)
    assert [(c.id, c.params, c.seed) for c in a] == [(c.id, c.params, c.seed) for c in b]
    assert [c.params for c in a] != [c.params for c in other]
    assert [c.id for c in a[:4]] == [f"gen0000/cand00{i}" for i in range(4)]
    assert all(0.0 <= x <= 1.0 for c in a for x in c.vector)


def test_a_failed_evaluation_is_told_as_the_worst_score_so_far():
    def next_after(scores):
        opt = create_optimizer("nevergrad", SPACE, seed=1, optimizer="OnePlusOne", population=4, budget=40)
        opt.tell(_told(opt.ask(), [-0.5, -0.9, -0.2, -0.7]))
        opt.tell(_told(opt.ask(), scores))
        return [c.params for c in opt.ask()]

    assert next_after([-0.3, None, -0.1, -0.4]) == next_after([-0.3, -0.9, -0.1, -0.4])  # -0.9: worst so far
    assert next_after([-0.3, None, -0.1, -0.4]) != next_after([-0.3, -0.05, -0.1, -0.4])


def test_search_cut_mid_generation_continues_exactly(tmp_path):
    def fresh():
        return create_optimizer("nevergrad", SPACE, seed=5, optimizer="CMA", population=6, budget=30)

    objective = DebugObjective(SPACE, noise=0.05)
    run_search(tmp_path / "ref.sqlite", fresh(), objective, budget=30)
    run_search(tmp_path / "cut.sqlite", fresh(), objective, budget=14)  # stops inside the third generation
    with ResultsStore(tmp_path / "cut.sqlite") as store:
        assert store.count() == 14 and store.latest_state()[0] == 1  # two generations told, the third cut
    run_search(tmp_path / "cut.sqlite", fresh(), objective, budget=30)

    def rows(name):
        with ResultsStore(tmp_path / name) as store:
            return [(e.candidate_id, e.params, e.seed, e.score) for e in store.evaluations()], store.states()

    assert rows("cut.sqlite") == rows("ref.sqlite")


def test_continue_refuses_a_store_nevergrad_would_not_propose(tmp_path):
    from mtl.errors import UserError

    run_search(tmp_path / "s.sqlite", create_optimizer("nevergrad", SPACE, seed=5, optimizer="CMA", population=4,
                                                         budget=8), DebugObjective(SPACE), budget=8)
    with ResultsStore(tmp_path / "s.sqlite") as store:
        store._conn.execute("UPDATE evaluations SET params = ? WHERE candidate_id = 'gen0001/cand002'",
                            [json.dumps(SPACE.to_params(np.full(SPACE.dim, 0.5)))])
        store._conn.commit()
    with pytest.raises(UserError, match="other candidates than the stored gen0001/cand002"):
        run_search(tmp_path / "s.sqlite", create_optimizer("nevergrad", SPACE, seed=5, optimizer="CMA",
                                                             population=4, budget=8), DebugObjective(SPACE), budget=12)


# -- the search job through main.py -------------------------------------------------------------

ARGS = ["--config", "exp.cma_debug", "--task_choice", "0-1-2", "--budget", "32", "--nevergrad_population", "8",
        "--objective_options.noise", "0.05"]


def _rows(run_dir):
    with ResultsStore(run_dir / "results.sqlite") as store:
        return [(e.candidate_id, e.params, e.seed, e.status, e.score, e.attempts) for e in store.evaluations()]


@pytest.mark.slow
def test_sigkilled_nevergrad_search_continues_to_the_uninterrupted_rows(main_runner, cli):
    assert cli("-e", "ref", *ARGS).returncode == 0
    killed = main_runner("-e", "cut", *ARGS, env={"MTL_FAULT": "KILL@search_record=13"})
    assert killed.returncode == -9, killed.stderr
    assert len(_rows(cli.cwd / "exp/cut")) == 13
    resumed = cli("-e", "cut", "--continue", "--budget", "40")  # a grown budget: Nevergrad still plans for 32
    assert resumed.returncode == 0, resumed.stderr
    assert _rows(cli.cwd / "exp/cut")[:32] == _rows(cli.cwd / "exp/ref") and len(_rows(cli.cwd / "exp/cut")) == 40
    with ResultsStore(cli.cwd / "exp/cut/results.sqlite") as store:
        assert store.get_meta("search")["options"] == {"optimizer": "CMA", "population": 8, "budget": 32}


@pytest.mark.parametrize("extra,message", [
    (["--nevergrad_optimizer", "CMAA"], "unknown Nevergrad optimizer 'CMAA' (did you mean CMA"),
    (["--nevergrad_population", "0"], "--nevergrad_population must be at least 1"),
    (["--optimizer_options.learning_rate", "0.1"], "not --optimizer_options"),
])
def test_bad_nevergrad_options_are_user_errors(cli, extra, message):
    result = cli("-e", "bad", *ARGS, *extra)
    assert result.returncode == 2 and message in result.stderr.replace("\n", " "), result.stderr
    assert not (cli.cwd / "exp/bad").exists()
