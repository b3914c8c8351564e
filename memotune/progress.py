"""A progress display for studies: a line per finished trial, and on a terminal a
live status line (trials running, finished and failed, budget spent, best so
far, cache hits)."""

from __future__ import annotations

import sys
from typing import TextIO

from memotune.pipelines import TrialRecord
from memotune.tuner.budget import Budget, ProposalCharge
from memotune.tuner.callbacks import StudyCallback, StudyInfo


class ProgressPrinter(StudyCallback):
    """Prints a study's progress to ``stream`` (stderr by default).

    ``live`` (default: whether the stream is a terminal) keeps a status line at
    the bottom, rewritten in place as trials start and finish.
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = _is_terminal(self.stream) if live is None else live
        self.running = self.finished = self.failed = self.hits = self.stages = 0
        self.budget: Budget | None = None
        self.best: TrialRecord | None = None
        self._status_shown = False

    def on_study_start(self, study: StudyInfo, restored: list[TrialRecord], budget: Budget) -> None:
        self.budget = budget
        for record in restored:
            self._count(record)
        verb = f"resuming ({len(restored)} trials restored)" if restored else "starting"
        self._print(
            f"study '{study.name}' {verb}: tuner {study.tuner}, seed {study.seed}, "
            f"budget {_amount(budget.total, budget)} — {study.path}"
        )

    def on_trial_start(self, study: StudyInfo, trial_id: int, config: dict, info: dict) -> None:
        self.running += 1
        self._show_status()

    def on_trial_end(
        self, study: StudyInfo, record: TrialRecord, budget: Budget, best: TrialRecord | None
    ) -> None:
        self.running = max(0, self.running - 1)
        self.budget, self.best = budget, best
        self._count(record)
        outcome = f"{record.objective:.6g}" if record.completed else f"FAILED ({record.error})"
        reuse = f" reused {record.reused_depth}" if record.reused_depth else ""
        charge = ProposalCharge.from_record(record)
        self._print(
            f"trial {record.trial_id:>4} {outcome:>12}  best {_best(best)}  "
            f"spent {_amount(budget.spent, budget)}/{_amount(budget.total, budget)} "
            f"({100 * budget.spent / budget.total:.0f}%)  hits {record.cache_hits}/"
            f"{len(record.stages)}{reuse}  running {self.running}  "
            f"tuner {charge.seconds:.2f}s  {charge.phase or ''}"
        )

    def on_study_end(self, study: StudyInfo, result) -> None:
        self._print(
            f"study '{study.name}' done ({result.stopped}): {len(result.trials)} trials "
            f"({self.failed} failed), best {_best(result.best_trial)}",
            status=False,
        )

    def status(self) -> str:
        """The live status line."""
        budget = self.budget
        spent = (
            f"spent {_amount(budget.spent, budget)}/{_amount(budget.total, budget)} "
            f"({100 * budget.spent / budget.total:.0f}%)"
            if budget
            else ""
        )
        return (
            f"[running {self.running} | finished {self.finished} | failed {self.failed} | "
            f"{spent} | best {_best(self.best)} | cache hits {self.hits}/{self.stages} stages]"
        )

    def _count(self, record: TrialRecord) -> None:
        self.finished += record.completed
        self.failed += not record.completed
        self.hits += record.cache_hits
        self.stages += len(record.stages)

    def _print(self, line: str, *, status: bool = True) -> None:
        self._clear_status()
        print(line, file=self.stream, flush=True)
        if status:
            self._show_status()

    def _show_status(self) -> None:
        if self.live:
            self._clear_status()
            self.stream.write(self.status())
            self.stream.flush()
            self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\033[2K")
            self._status_shown = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _best(record: TrialRecord | None) -> str:
    return f"{record.objective:.6g}" if record is not None else "–"


def _amount(value: float, budget: Budget) -> str:
    return f"{value:.0f}" if budget.kind == "trials" else f"{value:.1f}"
