"""Local Ray clusters outliving a SIGKILLed driver: the watchdog and the start-up sweep (no Ray needed)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from conftest import REPO
from mtl.meta.ray_watchdog import CLUSTER_ENV, OWNER_FILE, TREE_FILE, sweep_dead_clusters


@pytest.fixture
def root():
    folder = Path(tempfile.mkdtemp(prefix="wd", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fake_agent(temp_dir: Path, by: str = "cmdline") -> subprocess.Popen:
    """A cluster process: naming the temp dir on its command line (raylet, gcs_server), or only in its
    environment (the agents and workers, whose command lines Ray renames to 'ray::...')."""
    extra, env = ([f"--temp_dir={temp_dir}"], None) if by == "cmdline" else ([], {CLUSTER_ENV: str(temp_dir)})
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *extra], env=env,
                            start_new_session=True)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _gone(process: subprocess.Popen, temp_dir: Path, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None and not temp_dir.exists():
            return True
        time.sleep(0.1)
    return False


def test_the_watchdog_cleans_up_after_its_driver_is_sigkilled(root):
    temp_dir = root / "ray1"
    temp_dir.mkdir()
    (temp_dir / "session_x").mkdir()
    code = ("import subprocess, sys, time; from mtl.meta.ray_watchdog import claim, start_watchdog; "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
            f"claim({str(temp_dir)!r}); start_watchdog({str(temp_dir)!r}); print(child.pid, flush=True); "
            "time.sleep(60)")
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    agent, renamed = _fake_agent(temp_dir), _fake_agent(temp_dir, by="environ")
    try:
        child = psutil.Process(int(driver.stdout.readline()))  # unnamed, like Ray's reparented agents
        deadline = time.monotonic() + 20
        while str(child.pid) not in _read(temp_dir / TREE_FILE):  # the watchdog has seen it
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert agent.poll() is None and renamed.poll() is None and temp_dir.exists()  # untouched meanwhile
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert _gone(agent, temp_dir) and _gone(renamed, temp_dir)  # ended, and the temp dir removed
        assert not psutil.wait_procs([child], timeout=5)[1]  # seen in the driver's process tree: ended too
    finally:
        for process in (driver, agent, renamed):
            if process.poll() is None:
                process.kill()


def test_a_start_sweeps_only_clusters_whose_owner_is_dead(root):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(finished.pid).create_time()
    finished.wait()
    dead, alive, starting = root / "ray_dead", root / "ray_alive", root / "ray_starting"
    for folder in (dead, alive, starting):
        folder.mkdir()
    (dead / OWNER_FILE).write_text(json.dumps({"pid": finished.pid, "created": created}))
    me = psutil.Process()
    (alive / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "created": me.create_time()}))
    agents = {folder: _fake_agent(folder) for folder in (dead, alive)}
    unnamed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    (dead / TREE_FILE).write_text(json.dumps({str(unnamed.pid): psutil.Process(unnamed.pid).create_time()}))
    try:
        time.sleep(0.5)
        assert sweep_dead_clusters(root) == [dead]
        assert _gone(agents[dead], dead) and _gone(unnamed, dead)  # unnamed: known from the watchdog's tree
        assert agents[alive].poll() is None and alive.exists() and starting.exists()
    finally:
        for agent in [*agents.values(), unnamed]:
            agent.kill()
