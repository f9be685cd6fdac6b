"""Ray backend on a real local cluster (started once per test session): same results as in-process."""

import pytest

from mtl.meta.objectives import DebugObjective, FlakyObjective
from mtl.meta.optimizers import create_optimizer
from mtl.meta.search_loop import run_search
from mtl.meta.space import Hyperparameter, PartitionBlock, Space
from mtl.meta.results_store import ResultsStore

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


class CountingBatchObjective:
    """DebugObjective with `evaluate_batch`; each call (pid, size) is written to `log_dir` (survives actors)."""

    def __init__(self, space, log_dir):
        self.inner, self.log_dir, self.loads = DebugObjective(space, noise=0.05), log_dir, 0

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.loads += 1  # once per process that unpickles it

    def __call__(self, params, seed):
        return self.evaluate_batch([params], [seed])[0]

    def evaluate_batch(self, params_list, seeds):
        import os
        from pathlib import Path

        calls = len(list(Path(self.log_dir).glob("*")))
        (Path(self.log_dir) / f"{calls:04d}-{os.getpid()}-{len(seeds)}-{self.loads}").touch()
        return [self.inner(p, s) for p, s in zip(params_list, seeds)]


@pytest.fixture
def by_value():
    """Let Ray workers unpickle the classes of this test module (not importable there)."""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


ES = dict(init_random=8, num_deltas=4, num_to_use=3)


@pytest.mark.slow
def test_two_long_lived_actors_evaluate_half_a_generation_each(tmp_path, ray_cluster, by_value):
    from mtl.meta.ray_pool import RayPool

    log = tmp_path / "calls"
    log.mkdir()
    objective = CountingBatchObjective(SPACE, str(log))
    run_search(tmp_path / "a.sqlite", create_optimizer("es", SPACE, seed=2, **ES), objective.inner, budget=24)
    with RayPool(objective) as pool:
        assert pool.num_actors == 2  # the session cluster's 2 CPUs, 1 CPU each
        run_search(tmp_path / "b.sqlite", create_optimizer("es", SPACE, seed=2, **ES), pool=pool, budget=24)
    assert snapshot(tmp_path / "a.sqlite") == snapshot(tmp_path / "b.sqlite")
    calls = [name.split("-") for name in sorted(p.name for p in log.iterdir())]
    assert sorted(int(size) for _, _, size, _ in calls) == [4, 4, 4, 4, 4, 4]  # 8 + 8 + 8 over two actors
    assert len({pid for _, pid, _, _ in calls}) == 2 and {loads for *_, loads in calls} == {"1"}


@pytest.mark.slow
def test_an_actor_killed_mid_generation_has_its_share_retried(tmp_path, ray_cluster):
    from mtl.meta.ray_pool import RayPool

    optimizer = create_optimizer("es", SPACE, seed=2, **ES)
    victim = optimizer.ask()[5].seed
    inner = DebugObjective(SPACE, noise=0.05)
    run_search(tmp_path / "a.sqlite", create_optimizer("es", SPACE, seed=2, **ES), inner, budget=24)
    flaky = FlakyObjective(inner, str(tmp_path / "count"), failures=1, crash=True, seeds=(victim,))  # os._exit
    with RayPool(flaky) as pool:
        summary = run_search(tmp_path / "b.sqlite", optimizer, pool=pool, budget=24, max_retries=0)
    assert summary["failed"] == 0 and summary["evaluations"] == 24
    assert len(list((tmp_path / "count").iterdir())) == 2  # the actor died on it once, the retry succeeded
    assert snapshot(tmp_path / "a.sqlite") == snapshot(tmp_path / "b.sqlite")  # nothing lost, nothing twice


LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


@pytest.mark.slow
def test_local_cluster_listens_on_loopback_only_and_is_gone_after_sigterm(tmp_path):
    """A --backend ray search job: every Ray process listens on loopback; SIGTERM leaves no process or temp dir."""
    import json
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    import psutil

    from conftest import REPO

    short_tmp = tempfile.mkdtemp(prefix="t17", dir="/tmp")  # Ray's temp dir goes here (TMPDIR)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": short_tmp}
    env.pop("MTL_FAULT", None)
    job = subprocess.Popen([sys.executable, str(REPO / "main.py"), "-e", "r", "--config", "exp.es_debug",
                            "--task_choice", "0-1", "--backend", "ray", "--num_workers", "2"],
                           cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        store, deadline = tmp_path / "exp/r/results.sqlite", time.monotonic() + 240
        while not (store.exists() and ResultsStore(store).count() > 0):  # wait for evaluations to be recorded
            assert job.poll() is None and time.monotonic() < deadline, job.stderr.read() if job.poll() else "timeout"
            time.sleep(0.5)
        processes = [psutil.Process(job.pid), *psutil.Process(job.pid).children(recursive=True)]
        listening = [(p.name(), c.laddr.ip) for p in processes for c in p.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        names = " ".join(p.name() for p in processes)
        assert "raylet" in names and "gcs_server" in names and len(listening) >= 4
        assert all(ip in LOOPBACK for _, ip in listening), listening
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if job.poll() is None:
            job.kill()
    _, alive = psutil.wait_procs(processes, timeout=0)
    assert not alive, [p.name() for p in alive]
    clusters = os.path.join(short_tmp, f"mtl-ray-{os.getuid()}")  # ray_watchdog.cluster_root()
    left = [p for p in os.listdir(short_tmp) if p.startswith("ray")] + os.listdir(clusters)
    shutil.rmtree(short_tmp, ignore_errors=True)
    assert not left
    assert json.loads((tmp_path / "exp/r/status.json").read_text())["state"] == "interrupted"


@pytest.mark.slow
def test_unreachable_ray_address_exits_2_within_30_s(main_runner):
    import socket
    import time

    silent = socket.socket()  # accepts connections, never answers: ray.init alone would retry for minutes
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    start = time.monotonic()
    result = main_runner("-e", "u", "--config", "exp.es_debug", "--backend", "ray", "--ray_address",
                         f"127.0.0.1:{silent.getsockname()[1]}")
    elapsed = time.monotonic() - start
    silent.close()
    assert result.returncode == 2 and "no Ray cluster could be joined" in result.stderr, result.stderr
    assert elapsed < 90  # a loose bound, not a speed: the probe gives up after 20 s (Ray alone: minutes)
