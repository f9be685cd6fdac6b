"""The one runner of child jobs: in this process or in worker processes (the same numbers), finished
children reused, a failed child recorded while the others run on, an internal error's traceback in the
child's own log.txt, and the local pool's fresh process per job."""

import json
import logging
import os

import pytest

from mtl.config.options import build_options
from mtl.jobs import register_job
from mtl.jobs.toy import ToyOptions
from mtl.meta.pool import Work
from mtl.meta.workers import LocalProcessPool
from mtl.runner.children import Child, run_children
from mtl.runner.nested import nested_status, run_nested
from mtl.util.signals import StopFlag

LOG = logging.getLogger("mtl.test")


def _toy(**values):
    return build_options(ToyOptions, {"num_rounds": 1, "train_iters": 5, "device": "cpu", **values}, "test")


def _children(prefix: str) -> list[Child]:
    return [Child("toy", _toy(seed=s, train_iters=5 + s), f"{prefix}/c{s}") for s in range(3)]


def test_children_in_workers_equal_children_in_process_and_finished_ones_are_reused(tmp_path, caplog):
    here = run_children(_children("here"), tmp_path, stop=StopFlag(), log=LOG)
    there = run_children(_children("there"), tmp_path, stop=StopFlag(), log=LOG, workers=2)
    assert [r["steps"] for r in there] == [5, 6, 7]
    for a, b in zip(here, there):
        assert {k: v for k, v in a.items() if k != "perf"} == {k: v for k, v in b.items() if k != "perf"}
    assert all(nested_status(tmp_path, f"there/c{s}") == "done" for s in range(3))
    with caplog.at_level(logging.INFO, logger="mtl.test"):
        again = run_children(_children("there"), tmp_path, stop=StopFlag(), log=LOG, workers=2)
    assert again == there and caplog.text.count("done before, reusing its results") == 3


def test_a_child_killed_in_its_worker_is_recorded_and_the_others_finish(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_FAULT", "kill@train_step=7")  # only the child with 7 steps gets there
    children = _children("k")
    with pytest.raises(RuntimeError, match="k/c2 failed in its worker process"):
        run_children(children, tmp_path, stop=StopFlag(), log=LOG, workers=1)
    outcomes = run_children(children, tmp_path, stop=StopFlag(), log=LOG, workers=1, fresh=True, keep_going=True)
    assert [o.get("steps") for o in outcomes[:2]] == [5, 6]
    assert "exited with code -9" in outcomes[2]["failed"]
    monkeypatch.delenv("MTL_FAULT")
    resumed = run_children(children, tmp_path, stop=StopFlag(), log=LOG, workers=1)  # continues it
    assert resumed[2]["steps"] == 7


@register_job("test_internal_error", ToyOptions)
def _boom(ctx):
    ctx.log.info("about to fail")
    raise RuntimeError("boom in the job")


def test_an_internal_error_of_a_nested_run_keeps_its_traceback_in_its_own_log(tmp_path):
    with pytest.raises(RuntimeError, match="boom in the job"):
        run_nested("test_internal_error", _toy(), tmp_path, "p/broken")
    status = json.loads((tmp_path / "p/broken/status.json").read_text())
    assert status["state"] == "failed" and status["error"] == "RuntimeError: boom in the job"
    assert "user_error" not in status
    log = (tmp_path / "p/broken/log.txt").read_text()
    assert "about to fail" in log and "Traceback (most recent call last)" in log and "_boom" in log


def _pid(params, seed):
    return {"pid": os.getpid()}


@pytest.mark.parametrize("fresh", [False, True])
def test_the_local_pool_reuses_its_worker_or_starts_a_fresh_one_per_job(fresh):
    with LocalProcessPool(_pid, devices=["cpu"], fresh_processes=fresh) as pool:
        pids = []
        for k in range(3):  # one at a time, as the methods benchmark runs its children
            [future] = pool.as_completed([pool.submit(Work(f"w{k}"))])
            pids.append(future.result()["result"]["pid"])
    assert len(set(pids)) == (3 if fresh else 1)


def test_a_stop_requested_before_the_children_start_starts_none(tmp_path):
    import signal

    from mtl.util.signals import Interrupted

    stop = StopFlag()
    stop.signum = signal.SIGTERM  # as when SIGTERM arrives between two benchmark runs
    with pytest.raises(Interrupted):
        run_children(_children("s"), tmp_path, stop=stop, log=LOG, workers=1)
    assert [nested_status(tmp_path, f"s/c{k}") for k in range(3)] == ["missing"] * 3
