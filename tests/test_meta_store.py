"""SQLite results store: rows round-trip exactly, ids are unique, WAL, state per generation."""

import sqlite3

import pytest

from mtl.meta.results_store import Evaluation, ResultsStore


def _evaluation(i: int, **kw) -> Evaluation:
    return Evaluation(f"gen0000/cand{i:03d}", 0, i, {"partition": [[[0.1 * i]]], "lr": 1e-3}, seed=100 + i,
                      score=1 / 3 + i, per_task={"a": 0.1 + i}, resource=0.5, resource_per_task={"a": 0.5},
                      worker="w", duration=0.01, **kw)


def test_rows_round_trip_exactly_in_canonical_order(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        for i in (2, 0, 1):
            store.record(_evaluation(i))
        store.record(Evaluation("gen0001/cand000", 1, 0, {}, 7, status="failed", error="boom", attempts=3))
    with ResultsStore(tmp_path / "r.sqlite") as store:
        rows = store.evaluations()
        assert [e.candidate_id for e in rows] == ["gen0000/cand000", "gen0000/cand001", "gen0000/cand002",
                                                  "gen0001/cand000"]
        assert rows[1] == _evaluation(1)
        assert store.count() == 4 and store.count("failed") == 1 and store.count("ok") == 3
        assert set(store.get(["gen0000/cand002", "nope"])) == {"gen0000/cand002"}
        assert rows[3].score is None and rows[3].error == "boom" and not rows[3].ok


def test_an_evaluation_is_never_recorded_twice(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.record(_evaluation(0))
        with pytest.raises(sqlite3.IntegrityError):
            store.record(_evaluation(0))
        assert store.count() == 1


def test_wal_mode_and_state_per_generation(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.latest_state() is None
        store.save_state(0, {"generation": 1, "center": [0.5, 0.25]})
        store.save_state(1, {"generation": 2, "center": [0.1, 1 / 3]})
        assert store.latest_state() == (1, {"generation": 2, "center": [0.1, 1 / 3]})
        store.delete_state(1)
        assert [g for g, _ in store.states()] == [0]
        store.set_meta("search", {"optimizer": "es"})
        assert store.get_meta("search") == {"optimizer": "es"} and store.get_meta("missing", 3) == 3
