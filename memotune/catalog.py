"""The studies in a storage folder, read from their journals (for ``studies`` and ``show``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memotune.pipelines import TrialRecord, best_trial
from memotune.tuner.budget import Budget
from memotune.tuner.journal import RUNNING, Journal

JOURNAL = "journal.sqlite"


class StudyNotFound(ValueError):
    """No study of that name in the storage folder."""


class UnreadableStudy(ValueError):
    """A study folder whose journal cannot be read."""


@dataclass
class StoredStudy:
    """A study as its journal has it: settings, finished trials (in the order they
    finished), the ids of trials still running, and the budget they add up to."""

    name: str
    path: Path
    settings: dict[str, Any]
    records: list[TrialRecord]
    running: list[int] = field(default_factory=list)
    budget: Budget | None = None

    @property
    def maximize(self) -> bool:
        return self.settings.get("direction") == "maximize"

    @property
    def best(self) -> TrialRecord | None:
        return best_trial(self.records, self.maximize)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.records)

    @property
    def pruned(self) -> int:
        return sum(r.pruned for r in self.records)

    @property
    def updated(self) -> float:
        """When a trial last finished (or the study was created)."""
        times = [r.finished for r in self.records if r.finished]
        return max(times, default=float(self.settings.get("created", 0.0)))


def study_names(storage: str | Path) -> list[str]:
    """The studies in ``storage`` (folders with a journal), by name."""
    root = Path(storage)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / JOURNAL).is_file())


def load_study(storage: str | Path, name: str) -> StoredStudy:
    """Read study ``name`` from ``storage``; a missing or unreadable one is a clear error."""
    path = Path(storage) / name
    if not (path / JOURNAL).is_file():
        names = study_names(storage)
        known = f"studies there: {', '.join(names)}" if names else "there are no studies there"
        raise StudyNotFound(f"no study '{name}' in {storage} ({known})")
    try:
        journal = Journal(path / JOURNAL, read_only=True)
        try:
            settings, trials = journal.settings(), journal.trials()
        finally:
            journal.close()
    except sqlite3.DatabaseError as error:
        raise UnreadableStudy(f"cannot read study '{name}' ({path / JOURNAL}): {error}") from None
    records = [t.record for t in trials if t.status != RUNNING and t.record is not None]
    running = [t.id for t in trials if t.status == RUNNING or t.record is None]
    budget = Budget.from_settings(settings)
    budget.charge_all(records)
    return StoredStudy(name, path, settings, records, running, budget)
