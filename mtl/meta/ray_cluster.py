"""Ray clusters for the search: a local one kept on loopback and cleaned up on every exit, or a remote one joined.

Ray on a shared machine (DESIGN.md): Ray 2.60 decides at import whether a cluster may reach other
machines (`ray_constants.ENABLE_RAY_CLUSTER`, from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER); when it may,
gcs_server, raylet, the driver and the workers listen on all interfaces and the runtime-env agent on
the machine's external address. A local cluster therefore sets both the constant (ray may have been
imported already) and the variable (read by the processes Ray spawns) before `ray.init`: every
listening socket is then on 127.0.0.1 (tests/test_meta_ray.py lists them). Bounded object store,
short temp dir (Unix socket paths stop at ~107 bytes), no dashboard. `stop_local_ray` ends every
process of the cluster (agents outlive `ray.shutdown` otherwise) and removes its temp dir. After a
SIGKILL of the driver, its watchdog (or, failing that, the next local start) does it instead
(`ray_watchdog.py`).

A remote `address` is probed first, in a subprocess killed after CONNECT_TIMEOUT_S: `ray.init` on an
address where no cluster answers retries for minutes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil
import ray
from ray._private import ray_constants

from mtl.errors import UserError
from mtl.meta.ray_watchdog import CLUSTER_ENV, claim, cluster_root, start_watchdog, sweep_dead_clusters

CONNECT_TIMEOUT_S = 20
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_WATCHDOGS: dict[str, subprocess.Popen] = {}


def start_local_ray(num_cpus: int | None = None, num_gpus: int | None = None,
                    object_store_memory: int = 512 * 2**20, temp_dir: str | None = None) -> str:
    """Start a single-machine Ray cluster on loopback only; returns its temp dir (for `stop_local_ray`).

    Workers find `mtl` through PYTHONPATH (set here to this checkout).
    """
    os.environ[_LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read by ray.init when it picks the node's address
    root = str(Path(__file__).resolve().parents[2])
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *filter(None, paths)])
    sweep_dead_clusters()  # clusters of drivers killed with SIGKILL whose watchdog died too
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="ray", dir=cluster_root())
    claim(temp_dir)
    _WATCHDOGS[temp_dir] = start_watchdog(temp_dir)
    os.environ[CLUSTER_ENV] = temp_dir  # inherited by every process of the cluster: the watchdog finds them
    try:
        with _own_sigterm():
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=object_store_memory,
                     _temp_dir=temp_dir, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    except BaseException:  # SIGTERM or a failure half-way: leave nothing behind
        stop_local_ray(temp_dir)
        raise
    finally:
        os.environ.pop(CLUSTER_ENV, None)
    return temp_dir


def stop_local_ray(temp_dir: str | None) -> None:
    """Shut Ray down, end every process the cluster started (waiting for them), remove its temp dir."""
    processes = _cluster_processes()
    ray.shutdown()
    _end(processes)
    if temp_dir:
        shutil.rmtree(temp_dir, ignore_errors=True)
        _stop_watchdog(temp_dir)


def _stop_watchdog(temp_dir: str) -> None:
    watchdog = _WATCHDOGS.pop(temp_dir, None)
    if watchdog is not None:
        watchdog.terminate()
        try:
            watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()


def connect_ray(address: str) -> None:
    """Join the cluster at `address`; UserError (exit 2) when none answers within CONNECT_TIMEOUT_S."""
    _probe(address)
    with _own_sigterm():
        ray.init(address=address, logging_level="WARNING")


@contextlib.contextmanager
def _own_sigterm():
    """Keep the job's SIGTERM handler: ray.init installs one that exits at once (then aborts in shutdown),
    which would skip the graceful stop and the cluster's clean-up."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _probe(address: str) -> None:
    """Connect from a throw-away process, so that an unreachable address costs seconds, not minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():  # nobody listening: no need to wait for Ray's retries
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S / 2).close()
        except OSError as err:
            _unreachable(address, err.strerror or str(err))
    code = f"import ray; ray.init(address={address!r}, logging_level='ERROR'); ray.shutdown()"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=CONNECT_TIMEOUT_S, start_new_session=True)
    except subprocess.TimeoutExpired:
        _unreachable(address, f"no answer within {CONNECT_TIMEOUT_S} s")
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        _unreachable(address, lines[-1] if lines else f"exit status {result.returncode}")


def _unreachable(address: str, why: str) -> None:
    raise UserError(f"--ray_address {address}: no Ray cluster could be joined ({why}). Give the address of a "
                    f"running cluster's head node (host:6379, ray://host:10001, or auto for one started on this "
                    f"machine with `ray start --head`), or leave --ray_address empty to start a local cluster.")


def _cluster_processes() -> list[psutil.Process]:
    """This driver's Ray child processes (gcs_server, raylet, agents, workers), before shutdown."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for process in children:
        try:
            if "ray" in " ".join(process.cmdline()[:2]).lower() or "ray" in process.name().lower():
                out.append(process)
        except psutil.Error:
            pass
    return out


def _end(processes: list[psutil.Process], grace_s: float = 5) -> None:
    """Wait for `processes` to exit after shutdown; terminate, then kill, those that linger."""
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
