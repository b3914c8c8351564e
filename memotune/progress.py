"""A study's progress on the terminal (rich): a line per finished trial and, on a
terminal, a live bar of the budget with trials running, finished and failed, the
best so far, cache hits and the time left."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from memotune.pipelines import TrialRecord
from memotune.tuner.budget import Budget, ProposalCharge
from memotune.tuner.callbacks import StudyCallback, StudyInfo


class ProgressPrinter(StudyCallback):
    """Prints a study's progress to ``stream`` (stderr by default).

    ``live`` (default: whether the stream is a terminal) keeps a progress bar at the
    bottom, updated as trials start and finish.
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.console = Console(
            file=stream or sys.stderr, highlight=False, soft_wrap=True, force_terminal=live
        )
        self.live = self.console.is_terminal if live is None else live
        self.running = self.finished = self.failed = self.pruned = self.hits = self.stages = 0
        self.budget: Budget | None = None
        self.best: TrialRecord | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def on_study_start(self, study: StudyInfo, restored: list[TrialRecord], budget: Budget) -> None:
        self.budget = budget
        for record in restored:
            self._count(record)
        verb = f"resuming ({len(restored)} trials restored)" if restored else "starting"
        self._print(
            f"study '{study.name}' {verb}: tuner {study.tuner}, seed {study.seed}, "
            f"budget {_amount(budget.total, budget)} — {study.path}"
        )
        if self.live:
            self._bar = Progress(
                TextColumn("[bold]budget"),
                BarColumn(),
                TextColumn("{task.fields[spent]}"),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._task = self._bar.add_task("budget", total=budget.total, spent="", status="")
            self._bar.start()
            self._refresh()

    def on_trial_start(self, study: StudyInfo, trial_id: int, config: dict, info: dict) -> None:
        self.running += 1
        self._refresh()

    def on_trial_end(
        self, study: StudyInfo, record: TrialRecord, budget: Budget, best: TrialRecord | None
    ) -> None:
        self.running = max(0, self.running - 1)
        self.budget, self.best = budget, best
        self._count(record)
        spent = _spent(budget)
        if record.completed:
            reuse = f" reused {record.reused_depth}" if record.reused_depth else ""
            charge = ProposalCharge.from_record(record)
            self._print(
                f"trial {record.trial_id:>4} {record.objective:>12.6g}  best {_best(best)}  "
                f"spent {spent}  hits {record.cache_hits}/{len(record.stages)}{reuse}  "
                f"tuner {charge.seconds:.2f}s  {charge.phase or ''}".rstrip()
            )
        elif record.pruned:
            self._print(f"trial {record.trial_id:>4} {record.error}  spent {spent}")
        else:
            self._print(
                f"trial {record.trial_id:>4} [red]failed[/red] {escape(record.failure)}  "
                f"(memotune show {study.name} --trial {record.trial_id})",
                markup=True,
            )
        self._refresh()

    def on_study_end(self, study: StudyInfo, result) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._print(
            f"study '{study.name}' done ({result.stopped}): {len(result.trials)} trials "
            f"({self.failed} failed, {self.pruned} pruned), best {_best(result.best_trial)}"
        )

    def status(self) -> str:
        """Trials running, finished and failed, the best so far and the cache hits."""
        pruned = f" | pruned {self.pruned}" if self.pruned else ""
        return (
            f"running {self.running} | finished {self.finished} | failed {self.failed}"
            f"{pruned} | best {_best(self.best)} | cache hits {self.hits}/{self.stages} stages"
        )

    def _count(self, record: TrialRecord) -> None:
        self.finished += record.completed
        self.failed += record.failed
        self.pruned += record.pruned
        self.hits += record.cache_hits
        self.stages += len(record.stages)

    def _print(self, line: str, *, markup: bool = False) -> None:
        self.console.print(line if markup else escape(line), markup=markup)

    def _refresh(self) -> None:
        if self._bar is not None and self.budget is not None:
            self._bar.update(
                self._task,
                completed=min(self.budget.spent, self.budget.total),
                spent=_spent(self.budget),
                status=escape(self.status()),
            )


def _spent(budget: Budget) -> str:
    share = 100 * budget.spent / budget.total
    return f"{_amount(budget.spent, budget)}/{_amount(budget.total, budget)} ({share:.0f}%)"


def _best(record: TrialRecord | None) -> str:
    return f"{record.objective:.6g}" if record is not None else "–"


def _amount(value: float, budget: Budget) -> str:
    return f"{value:.0f}" if budget.kind == "trials" else f"{value:.1f}"
