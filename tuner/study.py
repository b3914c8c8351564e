"""The study loop: ask, run, journal, tell, until the budget is spent.

A study lives in ``<storage>/<name>/journal.sqlite``. Opening an existing
study resumes it: finished trials are restored (and told to a fresh tuner, in
the order they finished, which rebuilds its state), trials that were running
when the process died run again first, and the budget continues where it
stopped. A budget or trial count is the study's total, so resuming with a
larger one extends the study.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memotune.cache import StageCache
from memotune.pipelines import (
    FAILED,
    LocalRunner,
    Pipeline,
    Runner,
    TrialRecord,
    best_trial,
    canonical_json,
)

from .budget import PHASE, Budget, ProposalCharge, trial_cost
from .callbacks import CallbackList, StudyCallback, StudyInfo
from .journal import DEFAULT_STORAGE, RUNNING, Journal
from .pruning import Pruner
from .registry import DEFAULT_TUNER, TunerSpec, tuner_class, tuner_spec


class StudyError(ValueError):
    """A study that cannot be opened as asked (e.g. resumed with another search space)."""


class TooManyFailures(RuntimeError):
    """The study stopped after too many consecutive failed trials; ``result`` has them all."""

    def __init__(self, message: str, result: StudyResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class StudyResult:
    study: str
    path: Path
    tuner: str
    direction: str
    trials: list[TrialRecord]
    budget: dict[str, float]
    stopped: str
    best_trial: TrialRecord | None = None
    seconds_per_proposal: float = 0.0
    restored: int = 0
    rerun: list[int] = field(default_factory=list)

    @property
    def best_config(self) -> dict | None:
        return self.best_trial.config if self.best_trial else None

    @property
    def best_value(self) -> float | None:
        return self.best_trial.objective if self.best_trial else None


class StudyLock:
    """One process at a time runs a study: an exclusive lock on ``<study>/lock``,
    held from opening the study until its run ends (or the process does)."""

    def __init__(self, path: Path, name: str) -> None:
        self._file = open(path, "a+")  # noqa: SIM115 - held for the study's life
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "?"
            self._file.close()
            raise StudyError(
                f"study '{name}' is being run by another process (pid {holder}); "
                "wait for it or use another --study name"
            ) from None
        self._file.truncate(0)
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


class Study:
    """One tuning study over a pipeline, persisted in a journal."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        name: str,
        budget: Budget,
        tuner: TunerSpec = DEFAULT_TUNER,
        seed: int = 0,
        storage: str | Path = DEFAULT_STORAGE,
        cache: StageCache | None = None,
        runner: Runner | None = None,
        workers: int = 1,
        callbacks: Sequence[StudyCallback] = (),
        max_consecutive_failures: int = 5,
        tuner_options: dict[str, Any] | None = None,
        pruner: Pruner | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        chosen = tuner_class(tuner)  # an unknown tuner fails before the study is created
        self.pipeline = pipeline
        self.name = name
        self.path = Path(storage) / name
        self.budget = budget
        self.cache = cache
        self.runner = runner or LocalRunner(pipeline, cache)
        self.workers = workers
        self.callbacks = CallbackList(list(callbacks))
        self.max_consecutive_failures = max_consecutive_failures
        self.pruner = pruner.for_pipeline(pipeline) if pruner is not None else None
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = StudyLock(self.path / "lock", name)
        try:
            self.journal = Journal(self.path / "journal.sqlite")
            settings = self._open_settings(tuner_spec(tuner), seed, tuner_options or {})
            self.tuner_name, self.seed = settings["tuner"], settings["seed"]
            self.tuner = chosen(
                pipeline,
                seed=self.seed,
                cache=cache,
                study=name,
                **settings["tuner_options"],
            )
            self.journal.save_settings(settings)  # only once the tuner could be built
        except BaseException:
            self._lock.release()
            raise
        self.info = StudyInfo(name, self.path, pipeline, self.tuner_name, self.seed, settings)

    def run(self, runner: Runner | None = None) -> StudyResult:
        """Run (or resume) the study until its budget is spent; return every trial.

        ``runner`` replaces the one given when the study was opened (so a study can
        be opened, and its arguments and journal checked, before a cluster starts).
        Whatever stops it (the budget, too many failures, an exception, Ctrl-C),
        the callbacks hear ``on_study_end`` with the trials finished so far.
        """
        if runner is not None:
            self.runner = runner
        restored, rerun = self._restore()
        if self.pruner is not None:
            for record in restored:  # a resumed study keeps its rungs
                self.pruner.observe(record)
            self.runner.prune_with(self.pruner)
        finished = list(restored)
        self.callbacks.on_study_start(self.info, restored, self.budget)
        stopped = "error"
        try:
            stopped = self._loop(finished, rerun)
        except KeyboardInterrupt:
            stopped = "interrupted"
            raise
        finally:
            self.runner.close()
            result = self._result(finished, stopped, len(restored))
            self.callbacks.on_study_end(self.info, result)
            self.close()
        if stopped == "failures":
            raise TooManyFailures(
                f"study '{self.name}' stopped after {_trailing_failures(finished)} consecutive "
                f"failed trials; last error: {finished[-1].error}",
                result,
            )
        return result

    def close(self) -> None:
        """Let another process open the study (``run`` does this when it ends)."""
        self._lock.release()

    def _loop(self, finished: list[TrialRecord], rerun: list[tuple[int, dict, dict]]) -> str:
        """Ask, submit, wait, tell, until the budget is spent; return why it stopped.

        Trials that were running when an earlier process died run again first,
        budget or not: they were started within it.
        """
        in_flight: dict[int, tuple[dict, dict]] = {}
        failures = _trailing_failures(finished)
        next_id = self.journal.next_id()
        while True:
            while len(in_flight) < self.workers and (
                rerun or not self.budget.exhausted(len(in_flight))
            ):
                if rerun:
                    trial_id, config, info = rerun.pop(0)
                    info = {**info, "rerun": True}
                    self._rerun_ids.append(trial_id)
                else:
                    trial_id, next_id = next_id, next_id + 1
                    config, info = self._ask([c for c, _ in in_flight.values()])
                self.journal.start(trial_id, config, info)
                in_flight[trial_id] = (config, info)
                self.runner.submit(trial_id, config)
                self.callbacks.on_trial_start(self.info, trial_id, config, info)
            if not in_flight:
                return "budget" if self.budget.kind == "cost" else "trials"
            for record in self.runner.wait():
                _, info = in_flight.pop(record.trial_id)
                record.info.update(info)
                self._finish(record)
                finished.append(record)
                failures = failures + 1 if record.status == FAILED else 0
            if failures >= self.max_consecutive_failures:
                return "failures"

    def _ask(self, pending: list[dict]) -> tuple[dict, dict]:
        started = time.perf_counter()
        proposal = self.tuner.ask(pending, self.budget)
        seconds = time.perf_counter() - started
        config = self.pipeline.validate(proposal.config)
        charge = self.budget.proposal(seconds, proposal.info.get(PHASE))
        return config, {**proposal.info, **charge.to_info()}

    def _finish(self, record: TrialRecord) -> None:
        if record.pruned and self.pruner is not None:  # journaled, so a resumed tuner learns it too
            record.forecast = self.pruner.forecast(record)
        self.budget.charge(record)
        self.journal.finish(record, trial_cost(record))
        self.tuner.tell(self._blinded(record))
        if self.pruner is not None:
            self.pruner.observe(record)
        self._told.append(record)
        self.callbacks.on_trial_end(self.info, record, self.budget, self.best(self._told))

    def _blinded(self, record: TrialRecord) -> TrialRecord:
        """The record as the tuner may see it: without the pipeline's test figures."""
        if self.pipeline.test_metric is None:
            return record

        def without(metrics: dict[str, float]) -> dict[str, float]:
            return {k: v for k, v in metrics.items() if not self.pipeline.is_test_metric(k)}

        stages = [dataclasses.replace(s, metrics=without(s.metrics)) for s in record.stages]
        return dataclasses.replace(record, metrics=without(record.metrics), stages=stages)

    def best(self, records: list[TrialRecord]) -> TrialRecord | None:
        return best_trial(records, self.pipeline.maximize)

    def _restore(self) -> tuple[list[TrialRecord], list[tuple[int, dict, dict]]]:
        """Tell the tuner every finished trial; list the ones to run again."""
        self._told: list[TrialRecord] = []
        restored, rerun = [], []
        for trial in self.journal.trials():
            if trial.status == RUNNING or trial.record is None:
                rerun.append((trial.id, trial.config, trial.proposal))
                continue
            self.budget.charge(trial.record)
            self.tuner.tell(self._blinded(trial.record))
            self._told.append(trial.record)
            restored.append(trial.record)
        self._rerun_ids: list[int] = []
        return restored, rerun

    def _result(self, finished: list[TrialRecord], stopped: str, restored: int) -> StudyResult:
        charges = [ProposalCharge.from_record(r) for r in finished]
        proposals = [c.seconds for c in charges if c.proposed]
        return StudyResult(
            study=self.name,
            path=self.path,
            tuner=self.tuner_name,
            direction=self.pipeline.direction,
            trials=list(finished),
            budget=self.budget.summary(),
            stopped=stopped,
            best_trial=self.best(finished),
            seconds_per_proposal=sum(proposals) / len(proposals) if proposals else 0.0,
            restored=restored,
            rerun=list(self._rerun_ids),
        )

    def _open_settings(self, tuner: str, seed: int, tuner_options: dict) -> dict[str, Any]:
        """Create the study's settings, or check a resumed study against them."""
        space = space_signature(self.pipeline)
        stored = self.journal.settings()
        if not stored:
            settings = {
                "pipeline": self.pipeline.name,
                "space": space,
                "objective": self.pipeline.objective,
                "direction": self.pipeline.direction,
                "tuner": tuner,
                "seed": seed,
                "tuner_options": tuner_options,
                "budget_kind": self.budget.kind,
                "budget_total": self.budget.total,
                "cost_unit": self.pipeline.cost_unit,
                "created": time.time(),
            }
            return settings
        problems = []
        if stored["space"] != space:
            problems.append(space_change(stored["space"], space))
        if stored["objective"] != self.pipeline.objective or stored["direction"] != (
            self.pipeline.direction
        ):
            problems.append("its objective or direction differs")
        if stored["tuner"] != tuner:
            problems.append(f"it was run with tuner '{stored['tuner']}', not '{tuner}'")
        if stored["budget_kind"] != self.budget.kind:
            kind = "a trial count" if stored["budget_kind"] == "trials" else "a cost budget"
            problems.append(f"it was given {kind}")
        if problems:
            raise StudyError(
                f"cannot resume study '{self.name}' ({self.path}): "
                + "; ".join(problems)
                + ". Use another --study name to start a new one."
            )
        if tuner_options and tuner_options != stored["tuner_options"]:
            warnings.warn(
                f"study '{self.name}' is resumed with its own tuner options "
                f"{stored['tuner_options']!r}; ignoring {tuner_options!r}",
                stacklevel=3,
            )
        return {**stored, "budget_total": self.budget.total}


def space_signature(pipeline: Pipeline) -> str:
    """The search space as canonical text: resuming needs the same one."""
    return canonical_json(
        [
            [stage, name, type(param).__name__, repr(param)]
            for stage, name, param in pipeline.parameters()
        ]
    )


def space_change(stored: str, current: str) -> str:
    """What differs between two space signatures, parameter by parameter."""
    before = {(stage, name): text for stage, name, _, text in json.loads(stored)}
    after = {(stage, name): text for stage, name, _, text in json.loads(current)}
    changes = []
    for stage, name in sorted(before.keys() | after.keys()):
        old, new = before.get((stage, name)), after.get((stage, name))
        where = f"stage '{stage}' parameter '{name}'"
        if old is None:
            changes.append(f"{where} is new ({new})")
        elif new is None:
            changes.append(f"{where} was removed (was {old})")
        elif old != new:
            changes.append(f"{where} changed from {old} to {new}")
    return "its search space changed: " + ("; ".join(changes) or "parameter order differs")


def _trailing_failures(records: list[TrialRecord]) -> int:
    count = 0
    for record in reversed(records):
        if record.status != FAILED:  # a pruned trial did not fail
            break
        count += 1
    return count
