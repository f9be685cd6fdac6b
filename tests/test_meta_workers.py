"""Worker pools: local processes give the in-process results; raising and crashing workers are retried."""

import os

import pytest

from mtl.meta.objectives import DebugObjective, FlakyObjective
from mtl.meta.optimizers import create_optimizer
from mtl.meta.search_loop import run_search
from mtl.meta.space import Hyperparameter, PartitionBlock, Space
from mtl.meta.results_store import ResultsStore
from mtl.meta.pool import BACKENDS, WorkerCrashed, make_pool
from mtl.meta.workers import InProcessPool, LocalProcessPool

SPACE = Space((PartitionBlock(("a", "b")), Hyperparameter("lr", 1e-3, 1.0, "log")))


def snapshot(path):
    """Everything a search decides (not worker names or timings)."""
    with ResultsStore(path) as store:
        rows = [(e.candidate_id, e.params, e.seed, e.status, e.score, e.per_task, e.resource, e.resource_per_task,
                 e.attempts) for e in store.evaluations()]
        return rows, store.states()


def test_backends_are_registered():
    assert BACKENDS.available() == ["inprocess", "local", "ray"]


def test_local_processes_match_in_process(tmp_path):
    objective = DebugObjective(SPACE, noise=0.1)
    run_search(tmp_path / "a.sqlite", create_optimizer("random", SPACE, seed=1, batch_size=6), objective, budget=12)
    with LocalProcessPool(objective, devices=["cpu", "cpu"]) as pool:
        summary = run_search(tmp_path / "b.sqlite", create_optimizer("random", SPACE, seed=1, batch_size=6),
                             pool=pool, budget=12)
        assert summary["evaluations"] == 12 and summary["failed"] == 0
    assert snapshot(tmp_path / "a.sqlite") == snapshot(tmp_path / "b.sqlite")
    with ResultsStore(tmp_path / "b.sqlite") as store:
        workers = {e.worker for e in store.evaluations()}
    assert len(workers) == 2 and all(w.endswith(":cpu") and str(os.getpid()) not in w for w in workers)


def test_raising_evaluation_is_retried_then_recorded_failed(tmp_path):
    optimizer = create_optimizer("random", SPACE, seed=2, batch_size=4)
    seeds = [c.seed for c in optimizer.ask()]
    flaky_once = FlakyObjective(DebugObjective(SPACE), str(tmp_path / "once"), failures=1, seeds=(seeds[0],))
    always = FlakyObjective(flaky_once, str(tmp_path / "always"), failures=99, seeds=(seeds[2],))
    summary = run_search(tmp_path / "r.sqlite", optimizer, always, budget=8, max_retries=2)
    assert summary["evaluations"] == 8 and summary["failed"] == 1 and summary["reason"] == "budget"
    with ResultsStore(tmp_path / "r.sqlite") as store:
        rows = store.evaluations()
    assert [r.attempts for r in rows[:4]] == [2, 1, 3, 1]
    assert rows[0].ok and rows[2].status == "failed" and rows[2].score is None
    assert "RuntimeError: injected failure 3/99" in rows[2].error


def test_crashed_worker_process_is_replaced_and_its_job_retried(tmp_path):
    optimizer = create_optimizer("random", SPACE, seed=3, batch_size=4)
    seeds = [c.seed for c in optimizer.ask()]
    crash_once = FlakyObjective(DebugObjective(SPACE), str(tmp_path / "once"), failures=1, crash=True,
                                seeds=(seeds[1],))
    crash_always = FlakyObjective(crash_once, str(tmp_path / "always"), failures=99, crash=True, seeds=(seeds[3],))
    with make_pool("local", crash_always, devices=["cpu", "cpu"]) as pool:
        summary = run_search(tmp_path / "r.sqlite", optimizer, pool=pool, budget=4, max_retries=1)
    assert summary["evaluations"] == 4 and summary["failed"] == 1
    with ResultsStore(tmp_path / "r.sqlite") as store:
        rows = store.evaluations()
    assert [r.attempts for r in rows] == [1, 2, 1, 2] and rows[1].ok
    assert "exited with code 3" in rows[3].error


def test_in_process_pool_runs_lazily_in_submission_order():
    calls = []

    def objective(params, seed):
        calls.append(seed)
        if seed == 2:
            raise ValueError("bad")
        return {"score": float(seed)}

    from mtl.meta.optimizers.base import Candidate

    pool = InProcessPool(objective)
    futures = [pool.submit(Candidate(f"c{i}", 0, i, {}, i)) for i in range(3)]
    assert calls == []
    done = list(pool.as_completed(futures))
    assert calls == [0, 1, 2] and done == futures
    assert futures[0].result()["result"] == {"score": 0.0}
    with pytest.raises(Exception, match="ValueError: bad"):
        futures[2].result()


def test_worker_crash_error_type(tmp_path):
    objective = FlakyObjective(DebugObjective(SPACE), str(tmp_path), failures=1, crash=True)
    optimizer = create_optimizer("random", SPACE, batch_size=1)
    with LocalProcessPool(objective, devices=["cpu"]) as pool:
        future = pool.submit(optimizer.ask()[0])
        list(pool.as_completed([future]))
        assert isinstance(future.exception(), WorkerCrashed)
        second = pool.submit(optimizer.ask()[0])  # a fresh worker takes over
        list(pool.as_completed([second]))
        assert second.result()["result"]["score"] <= 0


def test_stop_with_evaluations_in_flight_then_continue_loses_nothing(tmp_path):
    objective = DebugObjective(SPACE, noise=0.1)
    run_search(tmp_path / "ref.sqlite", create_optimizer("random", SPACE, seed=4, batch_size=6), objective, budget=12)

    def three_recorded():
        with ResultsStore(tmp_path / "r.sqlite") as store:
            return store.count() >= 3

    with LocalProcessPool(objective, devices=["cpu", "cpu"]) as pool:
        summary = run_search(tmp_path / "r.sqlite", create_optimizer("random", SPACE, seed=4, batch_size=6),
                             pool=pool, budget=12, stop_flag=three_recorded)
    assert summary["reason"] == "stopped" and summary["evaluations"] == 3
    run_search(tmp_path / "r.sqlite", create_optimizer("random", SPACE, seed=4, batch_size=6), objective, budget=12)
    assert snapshot(tmp_path / "r.sqlite") == snapshot(tmp_path / "ref.sqlite")


class BatchObjective:
    """A population objective: one call per wave of candidates."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, params, seed):
        raise AssertionError("the in-process pool must use evaluate_batch")

    def evaluate_batch(self, params_list, seeds):
        self.calls.append(len(seeds))
        return [self.inner(p, s) for p, s in zip(params_list, seeds)]


def test_in_process_pool_evaluates_a_population_in_one_call(tmp_path):
    objective = DebugObjective(SPACE, noise=0.1)
    run_search(tmp_path / "a.sqlite", create_optimizer("es", SPACE, seed=5, init_random=8, num_deltas=4, num_to_use=3), objective,
               budget=16)
    batch = BatchObjective(objective)
    run_search(tmp_path / "b.sqlite", create_optimizer("es", SPACE, seed=5, init_random=8, num_deltas=4, num_to_use=3), batch,
               budget=16)
    assert batch.calls == [8, 8]
    assert snapshot(tmp_path / "a.sqlite") == snapshot(tmp_path / "b.sqlite")


class CountingBatchObjective:
    """A picklable population objective that records, in files, how many candidates each call got."""

    def __init__(self, inner, folder):
        self.inner, self.folder = inner, str(folder)

    def __call__(self, params, seed):
        return self.evaluate_batch([params], [seed])[0]

    def evaluate_batch(self, params_list, seeds):
        from pathlib import Path

        Path(self.folder, f"{os.getpid()}-{seeds[0]}").write_text(str(len(seeds)))
        return [self.inner(p, s) for p, s in zip(params_list, seeds)]


def test_local_pool_splits_a_population_over_its_workers(tmp_path):
    objective = DebugObjective(SPACE, noise=0.1)
    es = dict(init_random=8, num_deltas=4, num_to_use=3)
    run_search(tmp_path / "a.sqlite", create_optimizer("es", SPACE, seed=6, **es), objective, budget=16)
    (tmp_path / "calls").mkdir()
    with LocalProcessPool(CountingBatchObjective(objective, tmp_path / "calls"), devices=["cpu", "cpu"]) as pool:
        run_search(tmp_path / "b.sqlite", create_optimizer("es", SPACE, seed=6, **es), pool=pool, budget=16)
    assert snapshot(tmp_path / "a.sqlite") == snapshot(tmp_path / "b.sqlite")
    sizes = sorted(int(p.read_text()) for p in (tmp_path / "calls").iterdir())
    assert sizes == [4, 4, 4, 4]  # two generations of 8, each split into two calls of 4
    assert len({p.name.split("-")[0] for p in (tmp_path / "calls").iterdir()}) == 2
