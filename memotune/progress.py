"""A progress display for studies: one line per finished trial on stderr."""

from __future__ import annotations

import sys
from typing import TextIO

from memotune.pipelines import TrialRecord
from memotune.tuner.budget import Budget
from memotune.tuner.callbacks import StudyCallback, StudyInfo


class ProgressPrinter(StudyCallback):
    """Prints trials, budget spent, best so far and cache hits as the study goes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def on_study_start(self, study: StudyInfo, restored: list[TrialRecord], budget: Budget) -> None:
        verb = f"resuming ({len(restored)} trials restored)" if restored else "starting"
        self._print(
            f"study '{study.name}' {verb}: tuner {study.tuner}, seed {study.seed}, "
            f"budget {_amount(budget.total, budget)} — {study.path}"
        )

    def on_trial_end(
        self, study: StudyInfo, record: TrialRecord, budget: Budget, best: TrialRecord | None
    ) -> None:
        outcome = f"{record.objective:.6g}" if record.completed else f"FAILED ({record.error})"
        phase = record.info.get("phase", "")
        reuse = f" reused {record.reused_depth}" if record.reused_depth else ""
        self._print(
            f"trial {record.trial_id:>4} {outcome:>12}  best {_best(best)}  "
            f"spent {_amount(budget.spent, budget)}/{_amount(budget.total, budget)} "
            f"({100 * budget.spent / budget.total:.0f}%)  hits {record.cache_hits}/"
            f"{len(study.pipeline.stages)}{reuse}  tuner {record.info.get('tuner_seconds', 0):.2f}s"
            f"  {phase}"
        )

    def on_study_end(self, study: StudyInfo, result) -> None:
        self._print(
            f"study '{study.name}' done ({result.stopped}): {len(result.trials)} trials, "
            f"best {_best(result.best_trial)}"
        )

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def _best(record: TrialRecord | None) -> str:
    return f"{record.objective:.6g}" if record is not None else "–"


def _amount(value: float, budget: Budget) -> str:
    return f"{value:.0f}" if budget.kind == "trials" else f"{value:.1f}"
