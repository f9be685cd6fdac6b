"""Partition parameterisation: feasible-interval mapping, presets, JSON files."""

import json

import numpy as np
import pytest

from mtl.errors import UserError
from mtl.meta.partition import (PRESETS, Partition, from_fractions, load_partition, preset,
                                resolve_partition, save_partition, to_fractions)

TASKS = ["aircraft", "dtd", "gtsrb", "svhn"]


def _random_raws(count=200, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(1, 8))
        raw = rng.uniform(size=(2, n, n))
        # Include the corners of the cube, where interval ends meet.
        raw[rng.uniform(size=raw.shape) < 0.15] = 0.0
        raw[rng.uniform(size=raw.shape) < 0.15] = 1.0
        yield raw


def test_every_raw_point_maps_into_its_feasible_interval():
    eps = 1e-12
    for raw in _random_raws():
        fwd, bwd = to_fractions(raw)
        f, b = np.diag(fwd), np.diag(bwd)
        fi, fj, bi, bj = f[:, None], f[None, :], b[:, None], b[None, :]
        assert np.allclose(fwd, fwd.T) and np.allclose(bwd, bwd.T)
        assert np.allclose(f, np.diag(raw[0])) and np.allclose(b, np.diag(raw[1]) * f)
        off = ~np.eye(len(f), dtype=bool)
        assert np.all(fwd[off] >= np.maximum(0, fi + fj - 1)[off] - eps)
        assert np.all(fwd[off] <= np.minimum(fi, fj)[off] + eps)
        assert np.all(bwd[off] >= np.maximum(0, bi + bj - fi - fj + fwd)[off] - eps)
        assert np.all(bwd[off] <= np.minimum(np.minimum(fwd, bi), bj)[off] + eps)
        assert np.all(b <= f + eps)


def test_mapping_hits_interval_ends_and_is_monotone():
    f0, f1 = 0.7, 0.6
    shared = []
    for r in np.linspace(0, 1, 11):
        raw = np.zeros((2, 2, 2))
        raw[0] = [[f0, r], [0.0, f1]]
        shared.append(to_fractions(raw)[0][0, 1])
    assert shared[0] == pytest.approx(0.3) and shared[-1] == pytest.approx(0.6)
    assert np.all(np.diff(shared) > 0)


def test_lower_triangle_is_ignored_and_values_are_clamped():
    raw = np.random.default_rng(1).uniform(size=(2, 3, 3))
    other = raw.copy()
    other[:, [1, 2, 2], [0, 0, 1]] = 0.123
    assert np.allclose(to_fractions(raw)[0], to_fractions(other)[0])
    assert np.allclose(Partition(raw * 3 - 1).raw, np.clip(raw * 3 - 1, 0, 1))


def test_from_fractions_inverts_to_fractions():
    for raw in _random_raws(50, seed=2):
        fwd, bwd = to_fractions(raw)
        back = to_fractions(from_fractions(fwd, bwd))
        assert np.allclose(back[0], fwd) and np.allclose(back[1], bwd)


@pytest.mark.parametrize("name,f,shared,b,bshared", [
    ("share_all", 1.0, 1.0, 1.0, 1.0),
    ("independent", 0.25, 0.0, 0.25, 0.0),
    ("share_fwd_only", 1.0, 1.0, 0.25, 0.0),
    ("share_fixed", 0.75 + 0.25 / 4, 0.75, 0.75 + 0.25 / 4, 0.75),
])
def test_presets_have_their_fractions(name, f, shared, b, bshared):
    fwd, bwd = preset(name, 4).fractions()
    off = ~np.eye(4, dtype=bool)
    assert np.allclose(np.diag(fwd), f) and np.allclose(fwd[off], shared)
    assert np.allclose(np.diag(bwd), b) and np.allclose(bwd[off], bshared)


def test_random_preset_is_seeded_and_in_range():
    a, b, c = preset("random", 5, seed=3), preset("random", 5, seed=3), preset("random", 5, seed=4)
    assert np.array_equal(a.raw, b.raw) and not np.array_equal(a.raw, c.raw)
    assert a.raw.min() >= 0.05 and a.raw.max() <= 1.0
    assert preset("random", 5, num_unique=4).raw.shape == (4, 2, 5, 5)


def test_json_round_trip(tmp_path):
    part = preset("random", 4, seed=7)
    part.tasks = TASKS
    path = tmp_path / "best_partition.json"
    save_partition(part, path)
    data = json.loads(path.read_text())
    assert data["format"] == "mtl.partition" and data["tasks"] == TASKS
    loaded = load_partition(path, TASKS)
    assert np.allclose(loaded.raw, part.raw, atol=1e-6) and loaded.seed == 7 and loaded.preset == "random"


def test_load_accepts_search_params_and_bare_lists(tmp_path):
    raw = preset("share_fixed", 4).raw[0]
    (tmp_path / "p.json").write_text(json.dumps({"params": {"partition": raw.tolist()}, "tasks": TASKS}))
    (tmp_path / "q.json").write_text(json.dumps(raw.tolist()))
    for name in ("p.json", "q.json"):
        assert np.allclose(load_partition(tmp_path / name, TASKS).raw[0], raw)


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_partition(tmp_path / "missing.json")
    part = preset("share_all", 4)
    part.tasks = TASKS
    save_partition(part, tmp_path / "p.json")
    with pytest.raises(UserError, match="same --task_choice"):
        load_partition(tmp_path / "p.json", ["a", "b", "c", "d"])
    with pytest.raises(UserError, match="for 4 tasks"):
        load_partition(tmp_path / "p.json", ["a", "b"])
    (tmp_path / "bad.json").write_text('{"raw": [1, 2]}')
    with pytest.raises(UserError, match="cannot read"):
        load_partition(tmp_path / "bad.json")


def test_resolve_partition_presets_and_files(tmp_path):
    assert set(PRESETS) == {"share_all", "independent", "share_fwd_only", "share_fixed", "random", "families"}
    fixed = resolve_partition("share_fixed:0.5", TASKS)
    assert fixed.tasks == TASKS and fixed.fractions()[0][0, 1] == pytest.approx(0.5)
    save_partition(fixed, tmp_path / "f.json")
    assert np.allclose(resolve_partition(str(tmp_path / "f.json"), TASKS).raw, fixed.raw)
    with pytest.raises(UserError, match="neither"):
        resolve_partition("share_some", TASKS)
