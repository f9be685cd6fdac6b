"""Meta-optimizers: the ES step by hand, antithetic structure, determinism, ES vs random, grid, runner."""

import numpy as np
import pytest

from mtl.meta.objectives import DebugObjective
from mtl.meta.optimizers import OPTIMIZERS, create_optimizer
from mtl.meta.space import Hyperparameter, PartitionBlock, Space
from mtl.meta.results_store import Evaluation

SPACE2 = Space((Hyperparameter("x", 0.0, 1.0), Hyperparameter("y", 0.0, 1.0)))


def _told(candidates, scores, per_task=None):
    """Evaluations for `candidates` with given scores (None = failed)."""
    return [Evaluation(c.id, c.generation, c.position, c.params, c.seed,
                       status="failed" if s is None else "ok", score=s, per_task=(per_task or [{}] * len(scores))[i])
            for i, (c, s) in enumerate(zip(candidates, scores))]


def _optimize(optimizer, objective, budget):
    """A bare ask/evaluate/tell loop (no store) returning the best score seen."""
    best, used = -np.inf, 0
    while used < budget:
        candidates = optimizer.ask()
        results = [objective(c.params, c.seed) for c in candidates]
        used += len(candidates)
        best = max([best] + [r["score"] for r in results])
        optimizer.tell(_told(candidates, [r["score"] for r in results], [r["per_task"] for r in results]))
    return best


def test_es_defaults_are_the_originals():
    es = create_optimizer("es", SPACE2)
    o = es.opts
    assert (o.init_random, o.num_deltas, o.num_to_use, o.delta_size) == (32, 8, 7, 0.04)
    assert (o.learning_rate, o.momentum, o.nesterov, o.weight_reg, o.diag_weight_decay) == (0.25, 0.8, True, "l2", 0.001)
    assert len(es.ask()) == 32
    es.tell(_told(es.ask(), list(np.linspace(0, 1, 32))))
    assert len(es.ask()) == 16


def test_es_starts_from_the_best_random_sample_and_is_antithetic():
    es = create_optimizer("es", SPACE2, seed=4)
    first = es.ask()
    scores = [float(i % 7) for i in range(32)]
    es.tell(_told(first, scores))
    np.testing.assert_array_equal(es.center, first[int(np.argmax(scores))].vector)
    pop = es.ask()
    plus, minus = np.array([c.vector for c in pop[:8]]), np.array([c.vector for c in pop[8:]])
    np.testing.assert_allclose(plus - es.center, es.center - minus)  # centre away from the walls: no clamping
    assert [c.id for c in pop][:2] == ["gen0001/cand000", "gen0001/cand001"]


def test_es_update_matches_a_hand_computed_nesterov_step():
    es = create_optimizer("es", SPACE2, seed=1, init_random=0, num_deltas=2, num_to_use=1, weight_reg="none")
    p0 = np.array([0.5, 0.5])
    np.testing.assert_array_equal(es.center, p0)
    pop = es.ask()
    d = np.array([c.vector for c in pop[:2]]) - p0
    s = np.array([1.0, 0.0, 0.5, 0.25])  # plus_0, plus_1, minus_0, minus_1
    es.tell(_told(pop, s.tolist()))
    std = np.sqrt(np.mean((s - s.mean()) ** 2)) + 1e-4
    # pair 0 has the larger max(r+, r-): g = (r+_0 - r-_0) d_0; grad = -g; buffer = grad; step = grad + 0.8 grad
    g1 = (1.0 - 0.5) / std * d[0]
    p1 = p0 - 0.25 * (1 + 0.8) * (-g1)
    np.testing.assert_allclose(es.center, p1, rtol=1e-12)

    pop = es.ask()
    d = np.array([c.vector for c in pop[:2]]) - p1
    s = np.array([0.0, 2.0, 1.0, 1.0])
    es.tell(_told(pop, s.tolist()))
    std = np.sqrt(np.mean((s - s.mean()) ** 2)) + 1e-4
    g2 = (2.0 - 1.0) / std * d[1]  # pair 1 wins now
    buffer = 0.8 * (-g1) + (-g2)
    p2 = p1 - 0.25 * ((-g2) + 0.8 * buffer)
    np.testing.assert_allclose(es.center, p2, rtol=1e-12)
    np.testing.assert_allclose(es.buffer, buffer, rtol=1e-12)


def test_es_l2_resource_penalty_shrinks_only_the_forward_diagonal():
    space = Space((PartitionBlock(("a", "b")),))
    es = create_optimizer("es", space, init_random=0, num_deltas=2, num_to_use=1)
    es.center = np.full(space.dim, 0.6)
    es.tell(_told(es.ask(), [0.3] * 4))  # equal scores: no gradient, only the penalty
    expected = np.where(space.penalty_mask() == 1, 0.6 - 0.25 * 1.8 * 0.001 * 0.6, 0.6)
    np.testing.assert_allclose(es.center, expected, rtol=1e-12)
    assert space.penalty_mask().sum() == 2


def test_multiobjective_es_keeps_each_tasks_estimate_on_its_coordinates():
    space = Space((PartitionBlock(("a", "b")),))  # coords: fwd aa ab bb, bwd aa ab bb
    es = create_optimizer("es_multiobjective", space, seed=2, init_random=0, num_deltas=2, num_to_use=1,
                          weight_reg="none")
    es.center = np.full(space.dim, 0.5)
    pop = es.ask()
    d = np.array([c.vector for c in pop[:2]]) - 0.5
    a = np.array([1.0, 0.0, 0.5, 0.25])
    per_task = [{"a": float(x), "b": 0.7} for x in a]  # task b: no signal
    es.tell(_told(pop, [0.0] * 4, per_task))
    g_a = (1.0 - 0.5) / (np.sqrt(np.mean((a - a.mean()) ** 2)) + 1e-4) * d[0]
    share = np.array([1, 0.5, 0, 1, 0.5, 0])  # a's own entries: full; shared (a,b): averaged with b's zero
    np.testing.assert_allclose(es.center, 0.5 + 0.25 * 1.8 * g_a * share, rtol=1e-12)


def test_es_ignores_pairs_with_a_failed_member():
    es = create_optimizer("es", SPACE2, init_random=0, num_deltas=2, num_to_use=2, weight_reg="none")
    pop = es.ask()
    d = np.array([c.vector for c in pop[:2]]) - 0.5
    es.tell(_told(pop, [1.0, None, 0.0, 0.3]))
    s = np.array([1.0, 0.0])
    g = (1.0 - 0.0) / (s.std() + 1e-4) * d[0]
    np.testing.assert_allclose(es.center, 0.5 + 0.45 * g, rtol=1e-12)


@pytest.mark.parametrize("name", ["es", "random", "grid"])
def test_ask_is_deterministic_and_state_round_trips(name):
    space = Space((PartitionBlock(("a", "b")), Hyperparameter("lr", 1e-3, 1.0, "log")))
    kwargs = {"steps": 2} if name == "grid" else {}
    opt = create_optimizer(name, space, seed=7, **kwargs)
    for _ in range(3):
        pop = opt.ask()
        opt.tell(_told(pop, [float(np.sin(i)) for i in range(len(pop))]))
    clone = create_optimizer(name, space, seed=7, **kwargs)
    clone.load_state_dict(opt.state_dict())
    assert [(c.id, c.params, c.seed) for c in clone.ask()] == [(c.id, c.params, c.seed) for c in opt.ask()]
    assert opt.ask() == opt.ask()


def test_es_beats_random_search_on_the_debug_objective_at_equal_budget():
    space = Space((PartitionBlock(("a", "b", "c")), Hyperparameter("lr", 1e-3, 1.0, "log")))
    budget = 32 + 16 * 12
    wins = 0
    for seed in range(5):
        objective = DebugObjective(space, target_seed=seed, noise=0.02)
        es = _optimize(create_optimizer("es", space, seed=seed), objective, budget)
        rnd = _optimize(create_optimizer("random", space, seed=seed), objective, budget)
        wins += es > rnd
    assert wins == 5


def test_grid_enumerates_every_point_once():
    space = Space((Hyperparameter("share", 0.0, 1.0), Hyperparameter("k", 1, 3, integer=True)))
    grid = create_optimizer("grid", space, steps=5, batch_size=4)
    seen = []
    while not grid.finished:
        pop = grid.ask()
        seen += [(c.params["share"], c.params["k"]) for c in pop]
        grid.tell(_told(pop, [0.0] * len(pop)))
    assert len(seen) == 15 and len(set(seen)) == 15
    assert sorted({s for s, _ in seen}) == [0.0, 0.25, 0.5, 0.75, 1.0] and {k for _, k in seen} == {1, 2, 3}


def test_runner_evaluates_variants_times_trials_with_shared_seeds():
    space = Space((Hyperparameter("share", 0.0, 1.0),))
    runner = create_optimizer("runner", space, seed=3, variants={"low": {"share": 0.25}, "high": {"share": 0.75}},
                              trials=3)
    pop = runner.ask()
    assert [c.id for c in pop[:2]] == ["trial_0/low", "trial_0/high"] and len(pop) == 6
    assert pop[0].seed == pop[1].seed != pop[2].seed
    runner.tell(_told(pop, [0.0] * 6))
    assert runner.finished and runner.ask() == []


def test_registry_lists_the_optimizers():
    assert OPTIMIZERS.available() == ["es", "es_multiobjective", "grid", "nevergrad", "random", "runner"]
    with pytest.raises(KeyError, match="did you mean 'grid'"):
        OPTIMIZERS.get("gird")


def test_runner_per_task_runs_each_variant_once_per_task_over_an_empty_space():
    runner = create_optimizer("runner", Space(()), seed=1, variants={"a": {}, "b": {"lr": 0.1}}, trials=2,
                              per_task=True, tasks=["x", "y"])
    pop = runner.ask()
    assert [c.id for c in pop[:4]] == ["trial_0/x_a", "trial_0/x_b", "trial_0/y_a", "trial_0/y_b"]
    assert pop[3].params == {"lr": 0.1, "task_choice": "y"} and len(pop) == 8 and pop[0].vector == ()
