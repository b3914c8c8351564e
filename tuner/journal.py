"""A study's journal: its settings and every trial, in SQLite, written through.

A trial is journaled as ``running`` before it starts and as ``completed`` or
``failed``, with its full record, as soon as it finishes, before the next
trial starts; so a study killed at any moment loses nothing finished, and
knows which trials to run again.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memotune.pipelines import TrialRecord

RUNNING = "running"
#: Where studies live unless told otherwise: ``<storage>/<study>/journal.sqlite``.
DEFAULT_STORAGE = ".memotune/studies"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    proposal TEXT NOT NULL,
    record TEXT,
    charged REAL,
    started REAL NOT NULL,
    finished REAL
);
"""


@dataclass
class JournalTrial:
    id: int
    status: str
    config: dict[str, dict[str, Any]]
    proposal: dict[str, Any]
    record: TrialRecord | None
    charged: float | None


class Journal:
    """A study's trials and settings in SQLite; ``read_only`` opens an existing one
    to browse it without creating or changing anything."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        if read_only:
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=60000")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=60000")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def settings(self) -> dict[str, Any]:
        return {
            name: json.loads(value) for name, value in self.db.execute("SELECT * FROM settings")
        }

    def save_settings(self, settings: dict[str, Any]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO settings (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [(name, json.dumps(value)) for name, value in settings.items()],
            )

    def start(self, trial_id: int, config: dict, proposal: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO trials (id, status, config, proposal, started) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status, started = excluded.started",
            (trial_id, RUNNING, json.dumps(config), json.dumps(proposal, default=str), time.time()),
        )

    def finish(self, record: TrialRecord, charged: float) -> None:
        self.db.execute(
            "UPDATE trials SET status = ?, record = ?, charged = ?, finished = ? WHERE id = ?",
            (
                record.status,
                json.dumps(record.to_dict(), default=str),
                charged,
                record.finished or time.time(),
                record.trial_id,
            ),
        )

    def trials(self) -> list[JournalTrial]:
        rows = self.db.execute(
            "SELECT id, status, config, proposal, record, charged FROM trials ORDER BY "
            "COALESCE(finished, 1e300), id"
        )
        return [
            JournalTrial(
                id=row[0],
                status=row[1],
                config=json.loads(row[2]),
                proposal=json.loads(row[3]),
                record=TrialRecord.from_dict(json.loads(row[4])) if row[4] else None,
                charged=row[5],
            )
            for row in rows
        ]

    def next_id(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM trials").fetchone()[0])
