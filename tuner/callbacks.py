"""Hooks the study loop calls; tracking and progress display are callbacks that
the front door hands in, so the tuner never imports them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memotune.pipelines import Pipeline, TrialRecord

from .budget import Budget


@dataclass
class StudyInfo:
    name: str
    path: Path
    pipeline: Pipeline
    tuner: str
    seed: int
    settings: dict[str, Any]


class StudyCallback:
    """Override what you need; every hook is optional."""

    def on_study_start(self, study: StudyInfo, restored: list[TrialRecord], budget: Budget) -> None:
        """Called once, with the trials restored from the journal (empty for a new study)."""

    def on_trial_start(self, study: StudyInfo, trial_id: int, config: dict, info: dict) -> None:
        """Called when a trial is submitted."""

    def on_trial_end(
        self, study: StudyInfo, record: TrialRecord, budget: Budget, best: TrialRecord | None
    ) -> None:
        """Called when a trial finished (completed or failed) and was journaled."""

    def on_study_end(self, study: StudyInfo, result: Any) -> None:
        """Called when the study stops, whatever the reason."""


class CallbackList(StudyCallback):
    """Calls each callback in turn; a callback that raises is reported once and
    never stops the study."""

    def __init__(self, callbacks: list[StudyCallback]) -> None:
        self.callbacks = list(callbacks)
        self._reported: set[tuple[int, str]] = set()

    def _each(self, hook: str, *args: Any) -> None:
        for index, callback in enumerate(self.callbacks):
            try:
                getattr(callback, hook)(*args)
            except Exception as error:  # noqa: BLE001 - a broken callback must not stop tuning
                if (index, hook) not in self._reported:
                    self._reported.add((index, hook))
                    warnings.warn(
                        f"{type(callback).__name__}.{hook} failed ({type(error).__name__}: "
                        f"{error}); the study goes on",
                        stacklevel=3,
                    )

    def on_study_start(self, *args: Any) -> None:
        self._each("on_study_start", *args)

    def on_trial_start(self, *args: Any) -> None:
        self._each("on_trial_start", *args)

    def on_trial_end(self, *args: Any) -> None:
        self._each("on_trial_end", *args)

    def on_study_end(self, *args: Any) -> None:
        self._each("on_study_end", *args)
