"""The cache's SQLite index: one row per stored stage output, plus pins.

WAL mode lets many processes read while one writes; every connection waits
for the write lock instead of failing. Each row keeps the entry's *chain*:
the stage, version, params and true compute cost of every stage from the
first to this one, so the tuner can reuse a prefix even after its upstream
entries were evicted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    version TEXT NOT NULL,
    params TEXT NOT NULL,
    parent_key TEXT NOT NULL,
    lineage TEXT NOT NULL,
    chain TEXT NOT NULL,
    cost REAL NOT NULL,
    compute_seconds REAL NOT NULL,
    load_seconds REAL,
    size_bytes INTEGER NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    checksum TEXT NOT NULL,
    priority REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_lineage ON entries (lineage);
CREATE INDEX IF NOT EXISTS entries_priority ON entries (priority);
CREATE TABLE IF NOT EXISTS pins (
    key TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (key, owner)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""


@dataclass(frozen=True)
class EntryInfo:
    """An index row: what is stored under a key and what it cost."""

    key: str
    stage: str
    version: str
    params: dict[str, Any]
    parent_key: str
    lineage: str
    chain: list[dict[str, Any]]
    cost: float
    compute_seconds: float
    load_seconds: float | None
    size_bytes: int
    created: float
    last_used: float
    hits: int
    checksum: str
    pinned: bool = False

    @property
    def depth(self) -> int:
        """Index of this entry's stage in its pipeline (0 for the first stage)."""
        return len(self.chain) - 1


class Index:
    """Thread- and process-safe access to ``index.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def _transaction(self):
        return _Transaction(self._connection())

    def get(self, key: str) -> EntryInfo | None:
        row = self._connection().execute(_SELECT + " WHERE e.key = ?", (key,)).fetchone()
        return _entry(row) if row else None

    def upsert(self, entry: EntryInfo) -> None:
        with self._transaction() as db:
            inflation = _inflation(db)
            db.execute(
                """INSERT INTO entries (key, stage, version, params, parent_key, lineage, chain,
                       cost, compute_seconds, load_seconds, size_bytes, created, last_used,
                       hits, checksum, priority)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)
                   ON CONFLICT (key) DO UPDATE SET
                       chain = excluded.chain, cost = excluded.cost,
                       compute_seconds = excluded.compute_seconds,
                       size_bytes = excluded.size_bytes, last_used = excluded.last_used,
                       checksum = excluded.checksum, priority = excluded.priority""",
                (
                    entry.key,
                    entry.stage,
                    entry.version,
                    json.dumps(entry.params, sort_keys=True),
                    entry.parent_key,
                    entry.lineage,
                    json.dumps(entry.chain, sort_keys=True),
                    entry.cost,
                    entry.compute_seconds,
                    entry.load_seconds,
                    entry.size_bytes,
                    entry.created,
                    entry.last_used,
                    entry.checksum,
                    inflation + _value_per_byte(entry.cost, entry.size_bytes),
                ),
            )

    def record_hit(self, key: str, load_seconds: float) -> None:
        with self._transaction() as db:
            inflation = _inflation(db)
            db.execute(
                """UPDATE entries SET hits = hits + 1, last_used = ?, load_seconds = ?,
                       priority = ? + cost / MAX(size_bytes, 1)
                   WHERE key = ?""",
                (time.time(), load_seconds, inflation, key),
            )

    def delete(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))

    def by_lineage(self, lineage: str) -> list[EntryInfo]:
        rows = self._connection().execute(_SELECT + " WHERE e.lineage = ?", (lineage,))
        return [_entry(row) for row in rows]

    def all(self, order: str = "e.last_used DESC") -> list[EntryInfo]:
        return [_entry(row) for row in self._connection().execute(f"{_SELECT} ORDER BY {order}")]

    def keys(self) -> set[str]:
        return {row[0] for row in self._connection().execute("SELECT key FROM entries")}

    def total_bytes(self) -> int:
        row = self._connection().execute("SELECT COALESCE(SUM(size_bytes), 0) FROM entries")
        return int(row.fetchone()[0])

    def pop_eviction_victims(self, max_bytes: int) -> list[EntryInfo]:
        """Remove rows until the entries fit in ``max_bytes``; return what was removed.

        GreedyDual-Size: an entry's priority is the inflation value at its last
        use plus its compute cost per byte; the lowest priority goes first and
        the inflation value rises to it, so entries not used for a while age
        out even when they were dear. Pinned entries are never removed.
        """
        victims: list[EntryInfo] = []
        with self._transaction() as db:
            total = db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM entries").fetchone()[0]
            if total <= max_bytes:
                return victims
            candidates = db.execute(
                _SELECT + " WHERE NOT EXISTS (SELECT 1 FROM pins p WHERE p.key = e.key)"
                " ORDER BY e.priority ASC, e.last_used ASC"
            ).fetchall()
            for row in candidates:
                if total <= max_bytes:
                    break
                victims.append(_entry(row))
                total -= row["size_bytes"]
                db.execute(
                    "INSERT INTO meta (name, value) VALUES ('inflation', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
                    (row["priority"],),
                )
            db.executemany("DELETE FROM entries WHERE key = ?", [(v.key,) for v in victims])
        return victims

    def pin(self, keys: list[str], owner: str) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO pins (key, owner) VALUES (?, ?)", [(k, owner) for k in keys]
            )

    def unpin(self, owner: str | None, keys: list[str] | None = None) -> int:
        """Drop ``owner``'s pins on ``keys`` (all its pins without keys; every owner's
        pins with ``owner=None``). Returns how many pins were dropped."""
        with self._transaction() as db:
            if owner is None:
                return db.execute("DELETE FROM pins").rowcount
            if keys is None:
                return db.execute("DELETE FROM pins WHERE owner = ?", (owner,)).rowcount
            before = db.total_changes
            db.executemany(
                "DELETE FROM pins WHERE key = ? AND owner = ?", [(k, owner) for k in keys]
            )
            return db.total_changes - before

    def pinned(self, owner: str | None = None) -> set[str]:
        if owner is None:
            rows = self._connection().execute("SELECT key FROM pins")
        else:
            rows = self._connection().execute("SELECT key FROM pins WHERE owner = ?", (owner,))
        return {row[0] for row in rows}

    def replace_pins(self, pins: list[tuple[str, str]]) -> None:
        """Make ``(key, owner)`` pairs the whole pin table (a mirror of pins kept elsewhere)."""
        with self._transaction() as db:
            db.execute("DELETE FROM pins")
            db.executemany("INSERT OR IGNORE INTO pins (key, owner) VALUES (?, ?)", pins)

    def set_usage(self, key: str, hits: int, last_used: float, load_seconds: float | None) -> None:
        """Set an entry's use as counted elsewhere (every writer of a shared index)."""
        with self._transaction() as db:
            db.execute(
                """UPDATE entries SET hits = ?, last_used = MAX(last_used, ?),
                       load_seconds = COALESCE(?, load_seconds)
                   WHERE key = ?""",
                (hits, last_used, load_seconds, key),
            )

    def refresh(self) -> None:
        """Catch up with writers elsewhere; the local index has none."""

    def clear(self) -> int:
        with self._transaction() as db:
            count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            db.execute("DELETE FROM entries")
            db.execute("DELETE FROM pins")
            db.execute("DELETE FROM meta")
        return int(count)


_SELECT = "SELECT e.*, EXISTS (SELECT 1 FROM pins p WHERE p.key = e.key) AS pinned FROM entries e"


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front, waiting for it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _inflation(db: sqlite3.Connection) -> float:
    row = db.execute("SELECT value FROM meta WHERE name = 'inflation'").fetchone()
    return float(row[0]) if row else 0.0


def _value_per_byte(cost: float, size_bytes: int) -> float:
    return cost / max(size_bytes, 1)


def _entry(row: sqlite3.Row) -> EntryInfo:
    return EntryInfo(
        key=row["key"],
        stage=row["stage"],
        version=row["version"],
        params=json.loads(row["params"]),
        parent_key=row["parent_key"],
        lineage=row["lineage"],
        chain=json.loads(row["chain"]),
        cost=row["cost"],
        compute_seconds=row["compute_seconds"],
        load_seconds=row["load_seconds"],
        size_bytes=row["size_bytes"],
        created=row["created"],
        last_used=row["last_used"],
        hits=row["hits"],
        checksum=row["checksum"],
        pinned=bool(row["pinned"]),
    )
