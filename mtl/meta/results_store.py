"""SQLite results store of a search: one row per evaluation, optimizer state per generation, run metadata.

The file lives in the run folder (e.g. exp/<id>/results.sqlite). Every write is one transaction in
WAL mode with synchronous=FULL, so a process killed at any moment leaves either the whole row or
none of it. Candidate ids are UNIQUE: an evaluation can never be recorded twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mtl.errors import UserError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_id TEXT NOT NULL UNIQUE,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    params TEXT NOT NULL,
    score REAL,
    per_task TEXT NOT NULL,
    resource REAL,
    resource_per_task TEXT NOT NULL,
    seed INTEGER NOT NULL,
    worker TEXT NOT NULL,
    duration REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    attempts INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_generation ON evaluations (generation, position);
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass
class Evaluation:
    """The record of one candidate's evaluation (a row of the store).

    `score` is None when `status` is "failed"; `error` then holds the last attempt's error.
    """

    candidate_id: str
    generation: int
    position: int
    params: dict[str, Any]
    seed: int
    status: str = "ok"
    score: float | None = None
    per_task: dict[str, float] = field(default_factory=dict)
    resource: float | None = None
    resource_per_task: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    duration: float = 0.0
    attempts: int = 1
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


_COLUMNS = ("candidate_id", "generation", "position", "params", "score", "per_task", "resource",
            "resource_per_task", "seed", "worker", "duration", "status", "error", "attempts")
_JSON_COLUMNS = ("params", "per_task", "resource_per_task")


class ResultsStore:
    """Transactional access to one search's SQLite file; usable as a context manager."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; every write below opens its own BEGIN.
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._create_schema()
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise UserError(f"{self.path} is not a readable results database ({err}). Move it aside to start the "
                            "search's evaluations afresh, or restore it from a copy.") from None

    def _create_schema(self) -> None:
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._conn.execute(statement)
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: results schema version {version}, this code reads {SCHEMA_VERSION}")

    def _transaction(self):
        return _Transaction(self._conn)

    # -- evaluations -------------------------------------------------------------------------

    def record(self, evaluation: Evaluation) -> None:
        """Insert one evaluation (IntegrityError if its candidate id is already recorded)."""
        row = asdict(evaluation)
        values = [json.dumps(row[c], sort_keys=True) if c in _JSON_COLUMNS else row[c] for c in _COLUMNS]
        with self._transaction():
            self._conn.execute(
                f"INSERT INTO evaluations ({', '.join(_COLUMNS)}, created) VALUES ({', '.join('?' * len(_COLUMNS))}, ?)",
                [*values, time.time()])

    def evaluations(self, status: str | None = None) -> list[Evaluation]:
        """All evaluations in canonical (generation, position) order, optionally of one status."""
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        rows = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM evaluations {where} ORDER BY generation, position", args)
        return [_to_evaluation(r) for r in rows]

    def get(self, candidate_ids: Iterable[str]) -> dict[str, Evaluation]:
        """{candidate_id: Evaluation} for the ids that are recorded."""
        ids = list(candidate_ids)
        out: dict[str, Evaluation] = {}
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[start:start + 500]
            rows = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM evaluations WHERE candidate_id IN ({', '.join('?' * len(chunk))})",
                chunk)
            out.update((r[0], _to_evaluation(r)) for r in rows)
        return out

    def count(self, status: str | None = None) -> int:
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        return self._conn.execute(f"SELECT COUNT(*) FROM evaluations {where}", args).fetchone()[0]

    def max_score(self) -> float | None:
        """The best score among ok evaluations (None if there is none)."""
        return self._conn.execute("SELECT MAX(score) FROM evaluations WHERE status = 'ok'").fetchone()[0]

    # -- optimizer state ----------------------------------------------------------------------

    def save_state(self, generation: int, state: dict) -> None:
        """Record the optimizer state after `generation` was told (replaces an existing one)."""
        with self._transaction():
            self._conn.execute("INSERT OR REPLACE INTO generations VALUES (?, ?, ?)",
                               (generation, json.dumps(state, sort_keys=True), time.time()))

    def latest_state(self) -> tuple[int, dict] | None:
        """(generation, state) of the newest saved state, or None."""
        row = self._conn.execute("SELECT generation, state FROM generations ORDER BY generation DESC LIMIT 1").fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def states(self) -> list[tuple[int, dict]]:
        """Every saved (generation, state), oldest first."""
        rows = self._conn.execute("SELECT generation, state FROM generations ORDER BY generation")
        return [(g, json.loads(s)) for g, s in rows]

    def delete_state(self, generation: int) -> None:
        """Forget one generation's state (used to simulate a kill between results and state)."""
        with self._transaction():
            self._conn.execute("DELETE FROM generations WHERE generation = ?", (generation,))

    # -- metadata -----------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction():
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def __enter__(self):
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *exc):
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _to_evaluation(row) -> Evaluation:
    values = dict(zip(_COLUMNS, row))
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column])
    return Evaluation(**values)
