"""Shared fixtures: run main.py in a subprocess inside a temporary experiment root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Tiny models: one thread per process is faster than two fighting over 2 cores (pytest + a subprocess).
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Back to one thread for every test module, whatever an in-process job set before."""
    torch.set_num_threads(1)


def run_main(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """Run `python main.py ARGS` in `cwd` (so exp/ lands there); returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("MTL_FAULT", None) if not (env and "MTL_FAULT" in env) else None
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def main_runner(tmp_path):
    """Callable running main.py with tmp_path as the working directory."""

    def runner(*args: str, env: dict[str, str] | None = None):
        return run_main(list(args), tmp_path, env)

    runner.cwd = tmp_path
    return runner


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Callable running main.py's run_cli in this process, with tmp_path as the working directory.

    Much faster than a subprocess (no torch import per call); crash tests use `main_runner`.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import main as main_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MTL_FAULT", raising=False)

    def runner(*args: str) -> _Result:
        capsys.readouterr()
        code = main_module.run_cli(list(args))
        out = capsys.readouterr()
        return _Result(code, out.out, out.err)

    runner.cwd = tmp_path
    return runner


@pytest.fixture(scope="session")
def mini_data_dir(tmp_path_factory) -> Path:
    """A data root holding the prepared mini-decathlon, built once per test session."""
    from mtl.data.prepare import ensure_embedded

    root = tmp_path_factory.getbasetemp() / "shared_data"
    ensure_embedded("mini_decathlon", root)
    return root


@pytest.fixture(scope="session")
def families_data_dir(tmp_path_factory) -> Path:
    """A data root holding the prepared task-families dataset, built once per test session."""
    from mtl.data.prepare import ensure_embedded

    root = tmp_path_factory.getbasetemp() / "families_data"
    ensure_embedded("mini_families", root)
    return root


@pytest.fixture(scope="session")
def mini_root(mini_data_dir) -> Path:
    """The prepared mini-decathlon folder itself (devkit files and <domain>.h5)."""
    return mini_data_dir / "mini_decathlon"


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs, loopback, small object store) for the whole test session."""
    pytest.importorskip("ray")
    from mtl.meta.ray_pool import start_local_ray, stop_local_ray

    temp_dir = start_local_ray(num_cpus=2, object_store_memory=256 * 2**20)
    yield
    stop_local_ray(temp_dir)
