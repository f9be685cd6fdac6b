"""Search loop: SIGKILL at any point + continue == uninterrupted; budget, stop flag, settings checks."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mtl.errors import UserError
from mtl.meta.objectives import DebugObjective
from mtl.meta.optimizers import create_optimizer
from mtl.meta.search_loop import run_search
from mtl.meta.space import Hyperparameter, Space
from mtl.meta.results_store import ResultsStore

REPO = Path(__file__).resolve().parent.parent
BUDGET = 32 + 16 * 3  # the init generation + 3 ES generations

# Shared by this process and the killed child, so both build the very same search.
SETUP = """
from mtl.meta.objectives import DebugObjective
from mtl.meta.optimizers import create_optimizer
from mtl.meta.space import Hyperparameter, PartitionBlock, Space
SPACE = Space((PartitionBlock(("a", "b", "c")), Hyperparameter("lr", 1e-3, 1.0, "log")))
def build():
    return create_optimizer("es", SPACE, seed=11), DebugObjective(SPACE, target_seed=5, noise=0.05)
"""
CHILD = SETUP + """
import sys
from mtl.meta.search_loop import run_search
optimizer, objective = build()
run_search(sys.argv[1], optimizer, objective, budget=int(sys.argv[2]))
"""


def build():
    namespace: dict = {}
    exec(SETUP, namespace)
    return namespace["build"]()


def snapshot(path):
    """Everything the search decided: rows (minus worker names and timings) and optimizer states."""
    with ResultsStore(path) as store:
        rows = [(e.candidate_id, e.generation, e.position, e.params, e.seed, e.status, e.score, e.per_task,
                 e.resource, e.resource_per_task, e.attempts) for e in store.evaluations()]
        return rows, store.states()


def run_child_killed_at(store, rows):
    """Run the search in a subprocess that SIGKILLs itself right after recording row `rows`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MTL_FAULT": f"KILL@search_record={rows}"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(store), str(BUDGET)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with ResultsStore(store) as s:
        assert s.count() == rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "results.sqlite"
    optimizer, objective = build()
    summary = run_search(path, optimizer, objective, budget=BUDGET)
    assert summary["evaluations"] == BUDGET and summary["reason"] == "budget"
    return snapshot(path)


@pytest.mark.parametrize("kills", [(5,), (32,), (40, 47), (48, 64)], ids=lambda k: "-".join(map(str, k)))
def test_sigkill_then_continue_is_exact(tmp_path, reference, kills):
    # 5: mid-init; 32: last init row recorded, generation not yet told; 40, 47: mid-population, twice;
    # 48: end of a generation; 64: end of the next one
    store = tmp_path / "results.sqlite"
    for rows in kills:
        run_child_killed_at(store, rows)
    optimizer, objective = build()
    summary = run_search(store, optimizer, objective, budget=BUDGET)
    assert summary["evaluations"] == BUDGET
    assert snapshot(store) == reference


def test_state_lost_after_the_last_row_is_recomputed_identically(tmp_path, reference):
    store = tmp_path / "results.sqlite"
    optimizer, objective = build()
    run_search(store, optimizer, objective, budget=BUDGET)
    with ResultsStore(store) as s:
        s.delete_state(3)
        s.delete_state(2)
    optimizer, objective = build()
    run_search(store, optimizer, objective, budget=BUDGET)
    assert snapshot(store) == reference


def test_stop_flag_then_continue_is_exact_and_budget_can_grow(tmp_path, reference):
    store = tmp_path / "results.sqlite"
    optimizer, objective = build()
    flag = threading.Event()
    calls = []

    def stop_after(params, seed):
        calls.append(seed)
        if len(calls) == 37:
            flag.set()  # as a SIGTERM handler would
        return objective(params, seed)

    summary = run_search(store, optimizer, stop_after, budget=BUDGET, stop_flag=flag)
    assert summary["reason"] == "stopped" and summary["evaluations"] == 37
    for budget in (50, BUDGET):  # a smaller budget first: stops mid-generation, continues later
        optimizer, objective = build()
        summary = run_search(store, optimizer, objective, budget=budget)
        assert summary["evaluations"] == budget
    assert snapshot(store) == reference


def test_continue_with_other_settings_is_refused(tmp_path):
    optimizer, objective = build()
    run_search(tmp_path / "r.sqlite", optimizer, objective, budget=4)
    other = create_optimizer("es", optimizer.space, seed=11, delta_size=0.1)
    with pytest.raises(UserError, match="options differ"):
        run_search(tmp_path / "r.sqlite", other, objective, budget=8)


def test_finished_optimizer_ends_the_search_and_writer_gets_scalars(tmp_path):
    space = Space((Hyperparameter("share", 0.0, 1.0),))
    grid = create_optimizer("grid", space, steps=5, batch_size=2)

    class Writer:
        def __init__(self):
            self.tags = set()

        def add_scalar(self, tag, value, step):
            self.tags.add(tag)

    writer = Writer()
    summary = run_search(tmp_path / "r.sqlite", grid, DebugObjective(space), budget=100, writer=writer)
    assert summary["reason"] == "finished" and summary["evaluations"] == 5 and summary["generations"] == 3
    assert summary["best"]["params"]["share"] in (0.5, 0.75)
    assert {"search/score_mean", "search/best_score", "search/failed"} <= writer.tags


def test_invalid_objective_results_are_failures(tmp_path):
    space = Space((Hyperparameter("x", 0.0, 1.0),))
    summary = run_search(tmp_path / "r.sqlite", create_optimizer("random", space, batch_size=2),
                         lambda p, s: {"score": float("nan")}, budget=2, max_retries=0)
    assert summary["failed"] == 2
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert "score is nan" in store.evaluations()[0].error
