"""Runners: the protocol the study loop drives, and the in-process runner (one
configuration, one process, through the cache)."""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from memotune.cache import DEFAULT_ROOT, StageCache, open_cache

from .execution import StageFailed, chain_link, execute_stage, load_deepest
from .pipeline import ObjectiveError, Pipeline, StagePlan
from .records import COMPLETED, FAILED, StageRecord, TrialRecord
from .stage import Judge


class TrialFailed(RuntimeError):
    """Raised by :func:`run` when a stage fails; ``record`` holds what was done."""

    def __init__(self, record: TrialRecord) -> None:
        super().__init__(record.error)
        self.record = record


def run(
    pipeline: Pipeline,
    config: dict[str, dict[str, Any]],
    *,
    cache: StageCache | str | os.PathLike | None = DEFAULT_ROOT,
    raise_errors: bool = True,
) -> TrialRecord:
    """Run one configuration in this process and return its trial record.

    Stages whose output is cached are not run again. A configuration that does
    not fit the pipeline raises ``ConfigError`` before anything runs. When a
    stage raises, the outputs of the stages before it stay cached and
    :class:`TrialFailed` is raised (or, with ``raise_errors=False``, the failed
    record is returned).
    """
    record = run_trial(pipeline, pipeline.plan(config), open_cache(cache))
    if raise_errors and not record.completed:
        raise TrialFailed(record)
    return record


def run_trial(
    pipeline: Pipeline,
    plans: list[StagePlan],
    cache: StageCache | None,
    *,
    trial_id: int | None = None,
    judge: Judge | None = None,
) -> TrialRecord:
    """Run a planned configuration; stage failures become a failed record (a stage that
    ``judge`` stopped, a pruned one)."""
    started = time.time()
    first, upstream, records = load_deepest(pipeline, plans, cache)
    chain = [chain_link(plan, record) for plan, record in zip(plans, records, strict=False)]
    config = {plan.stage.name: plan.params for plan in plans}
    for plan in plans[first:]:
        try:
            upstream, record = execute_stage(
                pipeline, plan, upstream, cache, chain, trial_id=trial_id, judge=judge
            )
        except StageFailed as failure:
            records.append(failure.record)
            return failed_trial(
                config, records, failure.args[0], failure.trace, trial_id, started, failure.status
            )
        records.append(record)
        chain.append(chain_link(plan, record))
    return finish_trial(pipeline, config, upstream, records, trial_id, started)


def finish_trial(
    pipeline: Pipeline,
    config: dict[str, dict[str, Any]],
    output: Any,
    records: list[StageRecord],
    trial_id: int | None,
    started: float,
) -> TrialRecord:
    """The trial record for a pipeline whose last stage produced ``output``."""
    try:
        objective, metrics = pipeline.objective_from(output)
    except ObjectiveError as error:
        return failed_trial(config, records, str(error), None, trial_id, started)
    return TrialRecord(
        config=config,
        status=COMPLETED,
        objective=objective,
        metrics=metrics,
        stages=records,
        trial_id=trial_id,
        started=started,
        finished=time.time(),
    )


def failed_trial(
    config: dict[str, dict[str, Any]],
    records: list[StageRecord],
    error: str,
    trace: str | None,
    trial_id: int | None,
    started: float,
    status: str = FAILED,
) -> TrialRecord:
    return TrialRecord(
        config=config,
        status=status,
        objective=None,
        metrics={},
        stages=records,
        error=error,
        traceback=trace,
        trial_id=trial_id,
        started=started,
        finished=time.time(),
    )


class Runner(Protocol):
    """What the study loop drives: ``submit`` trials, ``wait`` for finished ones
    (at least one while any runs), ``close`` to cancel the rest; ``prune_with`` gives
    the trials' stages a pruner to ask (a :class:`~.stage.Judge`)."""

    def submit(self, trial_id: int, config: dict) -> None: ...
    def prune_with(self, pruner: Any) -> None: ...
    def running(self) -> int: ...
    def wait(self) -> list[TrialRecord]: ...
    def close(self) -> None: ...


class LocalRunner:
    """Runs trials one at a time in this process (``--runner local``; for debugging)."""

    def __init__(self, pipeline: Pipeline, cache: StageCache | None) -> None:
        self.pipeline = pipeline
        self.cache = cache
        self._queue: list[tuple[int, dict[str, dict[str, Any]]]] = []
        self._judge: Judge | None = None

    def submit(self, trial_id: int, config: dict[str, dict[str, Any]]) -> None:
        self._queue.append((trial_id, config))

    def prune_with(self, pruner: Any) -> None:
        self._judge = pruner

    def running(self) -> int:
        return len(self._queue)

    def wait(self) -> list[TrialRecord]:
        """Run the oldest submitted trial and return its record."""
        trial_id, config = self._queue.pop(0)
        plans = self.pipeline.plan(config)
        return [run_trial(self.pipeline, plans, self.cache, trial_id=trial_id, judge=self._judge)]

    def close(self) -> None:
        self._queue.clear()
