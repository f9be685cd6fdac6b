"""Ray backend on a real local cluster (started once per test session): same results as in-process."""

import pytest

from mtl.meta.objectives import DebugObjective, FlakyObjective
from mtl.meta.optimizers import create_optimizer
from mtl.meta.search import run_search
from mtl.meta.space import Hyperparameter, PartitionBlock, Space
from mtl.meta.store import ResultsStore

ray = pytest.importorskip("ray")

SPACE = Space((PartitionBlock(("a", "b")), Hyperparameter("lr", 1e-3, 1.0, "log")))

# ray_cluster: the session fixture in conftest.py (one cluster for every test module).


def snapshot(path):
    with ResultsStore(path) as store:
        rows = [(e.candidate_id, e.params, e.seed, e.status, e.score, e.per_task, e.resource, e.attempts)
                for e in store.evaluations()]
        return rows, store.states()


@pytest.mark.slow
def test_ray_search_matches_in_process(tmp_path, ray_cluster):
    from mtl.meta.ray_pool import RayPool

    objective = DebugObjective(SPACE, noise=0.05)
    es = dict(init_random=8, num_deltas=4, num_to_use=3)
    run_search(tmp_path / "a.sqlite", create_optimizer("es", SPACE, seed=2, **es), objective, budget=24)
    with RayPool(objective) as pool:
        summary = run_search(tmp_path / "b.sqlite", create_optimizer("es", SPACE, seed=2, **es), pool=pool,
                             budget=24)
    assert summary["evaluations"] == 24 and summary["failed"] == 0
    assert snapshot(tmp_path / "a.sqlite") == snapshot(tmp_path / "b.sqlite")
    with ResultsStore(tmp_path / "b.sqlite") as store:
        assert all(e.worker.startswith("ray:") for e in store.evaluations())


@pytest.mark.slow
def test_ray_failure_is_retried_then_recorded(tmp_path, ray_cluster):
    from mtl.meta.ray_pool import RayPool

    optimizer = create_optimizer("random", SPACE, seed=1, batch_size=3)
    seed = optimizer.ask()[1].seed
    objective = FlakyObjective(DebugObjective(SPACE), str(tmp_path / "count"), failures=99, seeds=(seed,))
    with RayPool(objective) as pool:
        summary = run_search(tmp_path / "r.sqlite", optimizer, pool=pool, budget=3, max_retries=1)
    assert summary["failed"] == 1
    with ResultsStore(tmp_path / "r.sqlite") as store:
        failed = store.evaluations("failed")[0]
    assert failed.attempts == 2 and "injected failure 2/99" in failed.error
