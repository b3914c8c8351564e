"""``MlflowTracker``: the study callback that logs a study to MLflow.

A study is an experiment (named after the study), a sweep its parent run,
each trial a child run, all created here in the driver, whatever node ran
the stages. The hooks only queue work: an outbox thread makes the MLflow
calls, so a slow, failing or unreachable tracking server never stalls the
study. A resumed study finds its parent run again (by the study's creation
time, which its journal keeps) and logs any trial the store is missing.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from memotune import plots, report
from memotune.pipelines import TrialRecord
from memotune.tuner.budget import TRIALS, Budget
from memotune.tuner.callbacks import StudyCallback, StudyInfo

from .outbox import Job, Outbox
from .runs import (
    NOTE_TAG,
    MetricValue,
    budget_step,
    runs_page,
    summary_metrics,
    trial_metrics,
)
from .store import (
    is_server,
    resolve_uri,
    restore_environment,
    server_is_up,
    use_short_http_timeouts,
)
from .writer import MlflowWriter

#: Where ``memotune ui`` serves by default.
DEFAULT_UI = "http://127.0.0.1:5000"
#: How a study stopped, as the MLflow status of its parent run.
RUN_STATUS = {"failures": "FAILED", "error": "FAILED", "interrupted": "KILLED"}
log = logging.getLogger("memotune.tracking")


class MlflowTracker(StudyCallback):
    """Logs a study to MLflow at ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db`` in the working directory).

    ``artifact_every``: seconds between refreshes of the parent run's plots and tables
    while the study runs (they are always logged when it ends). ``flush_timeout``: how
    long the end of the study may wait for logging to finish while the store answers.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        announce: bool = True,
        artifact_every: float = 120.0,
        flush_timeout: float = 300.0,
        stream: TextIO | None = None,
    ) -> None:
        self.uri = resolve_uri(tracking_uri)
        self.announce = announce
        self.artifact_every = artifact_every
        self.flush_timeout = flush_timeout
        self.stream = stream or sys.stderr
        self.outbox: Outbox | None = None
        self.writer: MlflowWriter | None = None

    # hooks: called in the study's thread, they only queue jobs

    def on_study_start(self, study: StudyInfo, restored: list[TrialRecord], budget: Budget) -> None:
        self._environment = use_short_http_timeouts() if is_server(self.uri) else []
        self.study = study
        self.kind = budget.kind
        self.records = list(restored)
        spent = report.replay_budget(restored, budget)
        self.points = report.convergence(restored, spent, study.pipeline.maximize)
        self.writer = MlflowWriter(self.uri, study.name, study.settings, str(study.path.resolve()))
        self.outbox = Outbox(f"MLflow at {self.uri}", self._reachable)
        self._artifacts_at = time.monotonic()
        backlog = list(zip(self.records, self.points, strict=True))
        self.outbox.put(Job("the study's run", lambda: self._open(backlog)))

    def on_trial_start(self, study: StudyInfo, trial_id: int, config: dict, info: dict) -> None:
        started = time.time()
        self.outbox.put(
            Job(
                f"trial {trial_id}",
                lambda: self.writer.start_trial(trial_id, config, info, study.tuner, started),
                key=f"trial {trial_id}",  # replaced by the trial's end if still queued then
            )
        )

    def on_trial_end(
        self, study: StudyInfo, record: TrialRecord, budget: Budget, best: TrialRecord | None
    ) -> None:
        previous = self.points[-1] if self.points else None
        point = report.next_point(previous, record, budget.spent, study.pipeline.maximize)
        self.records.append(record)
        self.points.append(point)
        label = f"trial {record.trial_id}"
        self.outbox.put(Job(label, lambda: self._log_trial(record, point), key=label))
        if time.monotonic() - self._artifacts_at >= self.artifact_every:
            self._artifacts_at = time.monotonic()
            self._queue_summary(budget.summary(), status=None, stopped=None)

    def on_study_end(self, study: StudyInfo, result: Any) -> None:
        status = RUN_STATUS.get(result.stopped, "FINISHED")
        self._queue_summary(result.budget, status=status, stopped=result.stopped)
        left = self.outbox.flush(3.0)
        if left and not self.outbox.offline:
            if self.announce:
                self._print(f"MLflow: logging {len(left)} item(s) to {self.uri}…")
            left = self.outbox.flush(self.flush_timeout)
        self.outbox.close()
        restore_environment(self._environment)
        missed = left + self.outbox.dropped
        if missed:
            log.warning(
                "memotune: not logged to MLflow at %s: %s. The study's journal has every "
                "trial: resume the study (same study name) to log them",
                self.uri,
                _summarize(missed),
            )
        elif self.announce:
            where = self.uri if is_server(self.uri) else DEFAULT_UI
            page = runs_page(where, self.writer.experiment_id)
            browse = page if is_server(self.uri) else f"browse with `memotune ui`: {page}"
            self._print(
                f"MLflow: experiment '{study.name}', run {self.writer.parent_id} "
                f"({len(self.records)} trials) in {self.uri} — {browse}"
            )

    # jobs: run on the outbox thread

    def _open(self, backlog: list[tuple[TrialRecord, report.Point]]) -> None:
        self.writer.open_study()
        for record, point in backlog:
            if record.trial_id not in self.writer.finished:
                self.outbox.put(
                    Job(f"trial {record.trial_id}", lambda r=record, p=point: self._log_trial(r, p))
                )

    def _log_trial(self, record: TrialRecord, point: report.Point) -> None:
        metrics = trial_metrics(record, point.cost)
        metrics.append(MetricValue("budget_spent", point.spent))
        curve = []
        if point.best is not None:
            curve.append(MetricValue("best_value", point.best, budget_step(point.spent, self.kind)))
        self.writer.log_trial(record, self.study.tuner, metrics, curve)

    def _queue_summary(
        self, budget: dict[str, Any], *, status: str | None, stopped: str | None
    ) -> None:
        """Queue the parent run's totals, plots and tables (replacing one still queued)."""
        records, points = list(self.records), list(self.points)
        pipeline = self.study.pipeline
        tags = {
            "budget_total": repr(float(budget["total"])),
            NOTE_TAG: report.summary_markdown(
                records, budget, objective=pipeline.objective, maximize=pipeline.maximize
            ),
        }
        if stopped:
            tags["stopped"] = stopped

        def run() -> None:
            failed = sum(r.failed for r in records)
            step = budget_step(points[-1].spent if points else 0.0, self.kind)
            metrics = summary_metrics(budget, len(records), failed)
            self.writer.log_study(
                [MetricValue(k, v, step) for k, v in metrics.items()],
                tags,
                self._files(records, points, budget),
                timestamp=time.time(),
                status=status,
            )

        self.outbox.put(Job("the study summary", run, key="summary"))

    def _files(
        self, records: list[TrialRecord], points: list[report.Point], budget: dict[str, Any]
    ) -> dict[str, bytes]:
        pipeline = self.study.pipeline
        files = plots.study_plots(
            records,
            points,
            name=self.study.name,
            objective=pipeline.objective,
            direction=pipeline.direction,
            unit=pipeline.cost_unit,
            budget_unit="trials" if self.kind == TRIALS else pipeline.cost_unit,
        )
        files["cost_breakdown.csv"] = report.to_csv(*report.cost_table(records, budget)).encode()
        files["trials.csv"] = report.to_csv(*report.trials_table(records, points)).encode()
        return files

    def _reachable(self) -> bool:
        return server_is_up(self.uri) if is_server(self.uri) else True

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def _summarize(labels: list[str]) -> str:
    """``the study's run, 12 trial runs, the study summary`` from job labels."""
    trials = {label for label in labels if label.startswith("trial ")}
    others = [label for label in dict.fromkeys(labels) if not label.startswith("trial ")]
    parts = [p for p in others if p != "the study summary"]
    parts += [f"{len(trials)} trial run{'s' if len(trials) != 1 else ''}"] if trials else []
    parts += [p for p in others if p == "the study summary"]
    return ", ".join(parts)
