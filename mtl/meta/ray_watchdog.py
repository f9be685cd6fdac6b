"""Clean-up of local Ray clusters whose driver died without cleaning up (SIGKILL): a watchdog and a sweep.

A driver cannot clean up after its own SIGKILL, and Ray's agents then live on (60-90 s, one still
listening) and its temp dir stays forever. So each local cluster's temp dir lives under
`cluster_root()` and holds `owner.json` (the driver's pid and start time). A watchdog process started
beside the cluster (this file run as a script, in its own session) polls the driver; when the driver
is gone it ends every process of the cluster and removes the dir. A cluster's processes are those
whose environment has CLUSTER_ENV = the temp dir (set for `ray.init`, inherited by gcs_server, raylet
and workers) or whose command line names the dir, and (for the watchdog) every process it saw in the
driver's process tree: raylet's agents rewrite their command line and environment
("ray::DashboardAgent") and are reparented when raylet dies with the driver. `sweep_dead_clusters`, run at every local start, does the same
for any dir whose owner is dead (a watchdog killed too, or a machine restart), using the tree the
watchdog last wrote (`processes.json`). Standard library and
psutil only, so the watchdog starts in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

OWNER_FILE = "owner.json"
TREE_FILE = "processes.json"  # pid -> start time of the driver's descendants, as last seen by the watchdog
CLUSTER_ENV = "MTL_RAY_CLUSTER"
POLL_S = 0.5
_UNCLAIMED_GRACE_S = 60  # a dir without owner.json younger than this may be a cluster being started


def cluster_root() -> Path:
    """The folder of this user's local cluster temp dirs (short: Unix socket paths stop at ~107 bytes)."""
    base = tempfile.gettempdir()
    base = base if len(base) <= 40 else "/tmp"
    root = Path(base) / f"mtl-ray-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


def claim(temp_dir: str | Path) -> None:
    """Record this process as the owner of the cluster in `temp_dir`."""
    me = psutil.Process()
    Path(temp_dir, OWNER_FILE).write_text(json.dumps({"pid": me.pid, "created": me.create_time()}))


def start_watchdog(temp_dir: str | Path) -> subprocess.Popen:
    """A process that cleans `temp_dir`'s cluster up once this (owner) process is gone."""
    me = psutil.Process()
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(me.pid), repr(me.create_time()),
                             str(temp_dir)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def sweep_dead_clusters(root: Path | None = None) -> list[Path]:
    """Clean up every cluster under `root` (default `cluster_root()`) whose owner is dead; returns their dirs."""
    swept = []
    for temp_dir in sorted((root or cluster_root()).iterdir()):
        if temp_dir.is_dir() and not _owner_alive(temp_dir):
            clean_cluster(temp_dir, _read_tree(temp_dir))
            swept.append(temp_dir)
    return swept


def clean_cluster(temp_dir: str | Path, known: dict[int, float] | None = None, grace_s: float = 3) -> None:
    """End the cluster's processes (terminate, then kill), then remove `temp_dir`.

    Args:
        temp_dir: the cluster's temp dir.
        known: pid -> start time of processes seen in the driver's process tree (the watchdog's).
    """
    victims = {p for p in psutil.process_iter(["pid", "cmdline", "environ"]) if _belongs(p.info, str(temp_dir))}
    victims.update(_still_running(known or {}))
    victims = list(victims)
    for signal_them in (psutil.Process.terminate, psutil.Process.kill):
        for process in victims:
            try:
                signal_them(process)
            except psutil.Error:
                pass
        _, victims = psutil.wait_procs(victims, timeout=grace_s)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _belongs(info: dict, temp_dir: str) -> bool:
    command = " ".join(info.get("cmdline") or [])
    if info.get("pid") == os.getpid() or Path(__file__).name in command:
        return False  # this watchdog, or another one
    if (info.get("environ") or {}).get(CLUSTER_ENV) == temp_dir:
        return True
    return re.search(re.escape(temp_dir) + r"(?=$|[/\s'\"=,])", command) is not None


def _tree(pid: int) -> dict[int, float]:
    """pid -> start time of `pid`'s descendants (Ray's agents are reparented once raylet dies)."""
    try:
        return {p.pid: p.create_time() for p in psutil.Process(pid).children(recursive=True)
                if p.pid != os.getpid()}
    except psutil.Error:
        return {}


def _write_tree(temp_dir: str, known: dict[int, float]) -> None:
    path = Path(temp_dir, TREE_FILE)
    try:
        path.with_suffix(".tmp").write_text(json.dumps({str(k): v for k, v in known.items()}))
        path.with_suffix(".tmp").replace(path)
    except OSError:  # the dir is being removed
        pass


def _read_tree(temp_dir: Path) -> dict[int, float]:
    try:
        return {int(k): float(v) for k, v in json.loads((temp_dir / TREE_FILE).read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _still_running(known: dict[int, float]) -> list[psutil.Process]:
    out = []
    for pid, created in known.items():
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - created) < 0.5:
                out.append(process)
        except psutil.Error:
            pass
    return out


def _owner_alive(temp_dir: Path) -> bool:
    try:
        owner = json.loads((temp_dir / OWNER_FILE).read_text())
    except (OSError, ValueError):
        try:  # unclaimed: being started right now, or left by a start killed before it claimed the dir
            return time.time() - temp_dir.stat().st_mtime < _UNCLAIMED_GRACE_S
        except OSError:
            return True
    return _alive(int(owner["pid"]), float(owner["created"]))


def _alive(pid: int, created: float) -> bool:
    """Whether process `pid` started at `created` still runs (a reused pid has another start time)."""
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - created) < 0.5 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(pid: int, created: float, temp_dir: str, tree_every: int = 4) -> None:
    """Wait while the owner lives and the cluster's dir exists; clean it up if the owner died first.

    The owner's process tree is recorded every `tree_every` polls: Ray's agents rewrite their command
    line and environment, and outlive raylet (which dies with the driver), so only their pids name them.
    """
    known: dict[int, float] = {}
    polls = 0
    while Path(temp_dir).exists():
        if not _alive(pid, created):
            clean_cluster(temp_dir, known)
            return
        if polls % tree_every == 0:
            seen = _tree(pid)
            if not seen.keys() <= known.keys():
                known.update(seen)
                _write_tree(temp_dir, known)
        polls += 1
        time.sleep(POLL_S)


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3])
