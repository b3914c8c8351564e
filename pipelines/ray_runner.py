"""The Ray runner: every stage a Ray task, trials in parallel, shared in-flight work.

Each stage runs as a Ray task with the resources its stage declares. A
stage's output travels to the next stage's task as an object reference, and
cache reads and writes happen inside the tasks, so a large output never
passes through the driver; only per-stage records (small) and the last
stage's metrics come back.

A trial starts from the deepest stage whose output is cached (the driver
asks the index; the first task loads the object) or that another running
trial is computing right now: then it chains onto that trial's object
reference and waits for it instead of computing it again (a ``shared``
stage). A task whose worker or node dies is retried by Ray (``max_retries``)
on another worker; an exception raised by a stage function is not retried
and fails the trial.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from memotune.cache import StageCache

from .execution import StageFailed, chain_link, execute_stage, load_deepest, load_own
from .pipeline import Pipeline, StagePlan
from .ray_losses import WATCH_SECONDS, LossWatch, started
from .records import StageRecord, TrialRecord
from .runner import failed_trial, finish_trial
from .shipping import UserCode
from .stage import Judge


def _stage_task(attempts: str, *args: Any) -> tuple[Any, list[StageRecord]]:
    """A stage task: :func:`_run_stages`, once it has told the sweep's ``attempts``
    where it runs (so the driver can say what a lost node or worker was running)."""
    context = ray.get_runtime_context()
    started(attempts, context.get_task_name(), context.get_node_id())
    return _run_stages(*args)


def _run_stages(
    code: UserCode,
    pipeline_ref: list[ray.ObjectRef],
    config: dict[str, dict[str, Any]],
    index: int,
    load: bool,
    cache: StageCache | None,
    trial_id: int,
    judge: Judge | None,
    upstream_ref: list[ray.ObjectRef],
    *upstream_records: list[StageRecord],
) -> tuple[Any, list[StageRecord]]:
    """Run stage ``index`` of a trial inside a Ray task; return its output and records.

    The pipeline and the upstream output come as object references wrapped in
    lists, which Ray leaves alone: they are fetched only once the user's modules
    are imported (``code``). ``upstream_records`` are the records of the stages
    before ``index``. With
    ``load``, this is the trial's first task: it loads the deepest cached
    output before ``index`` itself (and computes any stage whose entry was
    evicted since the driver looked), and also returns the records of the
    stages it covered that way. ``index == len(stages)`` only loads (a full hit).
    ``judge`` answers the stages' ``context.should_prune()`` (the sweep's pruner).
    A stage whose output is in the cache already (stored by another sweep, or by
    an earlier attempt of this task before its node died) is loaded, not rerun.
    """
    code.load()
    pipeline: Pipeline = ray.get(pipeline_ref[0])
    upstream = ray.get(upstream_ref[0]) if upstream_ref else None
    plans = pipeline.plan(config)
    covered: list[StageRecord] = []
    if load:
        _, upstream, covered = load_deepest(pipeline, plans[:index], cache)
        known = list(covered)
    else:
        known = [record for group in upstream_records for record in group]
    chain = [chain_link(plan, record) for plan, record in zip(plans, known, strict=False)]
    try:
        for plan in plans[len(known) : index + 1]:
            reused = load_own(pipeline, plans, plan, cache)
            if reused is None:
                reused = execute_stage(
                    pipeline, plan, upstream, cache, chain, trial_id=trial_id, judge=judge
                )
            upstream, record = reused
            covered.append(record)
            chain.append(chain_link(plan, record))
    except StageFailed as failure:
        raise StageFailed(failure.record, failure.trace, covered, failure.status) from None
    return upstream, covered


class _PrunerActor:
    """The study's pruner, where every stage task of the sweep can ask it."""

    def __init__(self, pruner: Any) -> None:
        self.pruner = pruner

    def should_prune(self, *report: Any) -> bool:
        return self.pruner.should_prune(*report)

    def observe(self, record: TrialRecord) -> None:
        self.pruner.observe(record)


@dataclass(frozen=True)
class _RemoteJudge:
    """A stage's ``context.should_prune()`` answered by the pruner's actor, which holds
    the sweep's reports; where it decides (``decides_at``, a fixed rule) is answered
    by a copy of the pruner that travels with the task."""

    actor: Any
    rule: Any

    def should_prune(self, trial_id: int | None, stage: str, step: int, metrics: dict) -> bool:
        return ray.get(self.actor.should_prune.remote(trial_id, stage, step, metrics))

    def decides_at(self, stage: str, step: int) -> bool:
        return self.rule.decides_at(stage, step)


@dataclass
class _Task:
    """One submitted stage task of a trial (or of the trial it shares work with)."""

    records: ray.ObjectRef
    stage: int
    shared: bool = False


@dataclass
class _Trial:
    id: int
    config: dict[str, dict[str, Any]]
    plans: list[StagePlan]
    started: float
    tasks: list[_Task] = field(default_factory=list)
    output: ray.ObjectRef | None = None


@dataclass
class _Flight:
    """A stage output being computed: later trials that need the key chain onto it."""

    value: ray.ObjectRef
    tasks: list[_Task]
    owner: int


class RayRunner:
    """Runs trials as chains of Ray tasks, many at once (the study decides how many).

    ``max_retries`` is how many times a stage whose worker process or node
    died is run again elsewhere before its trial fails.

    ``cancel_on_close``: whether :meth:`close` cancels the stages still running.
    Where the driver disconnects from Ray right after the sweep, Ray stops its
    tasks anyway, and cancelling one as it completes can abort the driver
    (Ray 2.60: "Check failed: it != submissible_tasks_.end() Tried to complete
    task that was not pending", ray-project/ray#54846), so :func:`memotune.tune`
    cancels only on a Ray that outlives the sweep.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        cache: StageCache | None,
        *,
        max_retries: int = 3,
        cancel_on_close: bool = True,
    ) -> None:
        if not ray.is_initialized():
            raise RuntimeError("the Ray runner needs Ray: call ray.init() or use memotune.tune")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.pipeline = pipeline
        self.cache = cache
        self.max_retries = max_retries
        self.cancel_on_close = cancel_on_close
        self._code = UserCode.of([s.fn for s in pipeline.stages], pipeline.inputs)
        self._pipeline_ref = ray.put(pipeline)
        self._remote = ray.remote(_stage_task)
        self._trials: dict[int, _Trial] = {}
        self._flights: dict[str, _Flight] = {}
        self._losses = LossWatch()
        self._judge: _RemoteJudge | None = None

    def prune_with(self, pruner: Any) -> None:
        """Stages ask ``pruner`` (in an actor of its own, which holds its rungs for the
        sweep) whether to stop."""
        actor = ray.remote(num_cpus=0)(_PrunerActor).remote(pruner)
        self._judge = _RemoteJudge(actor, pruner)

    def submit(self, trial_id: int, config: dict[str, dict[str, Any]]) -> None:
        plans = self.pipeline.plan(config)
        trial = _Trial(trial_id, config, plans, time.time())
        start, value = self._starting_point(plans, trial)
        for plan in plans[start:]:
            value = self._submit_task(trial, plans, plan.index, value, plan.stage.ray_options)
            self._flights[plan.key] = _Flight(value, list(trial.tasks), owner=trial_id)
        if start == len(plans) and value is None:  # every stage cached: just load the last
            value = self._submit_task(trial, plans, len(plans), None, {"num_cpus": 0})
        trial.output = value
        self._trials[trial_id] = trial

    def running(self) -> int:
        return len(self._trials)

    def wait(self) -> list[TrialRecord]:
        """Block until at least one trial has finished; return every finished one."""
        if not self._trials:
            return []
        waiting: dict[ray.ObjectRef, list[_Trial]] = {}
        for trial in self._trials.values():  # two trials may wait on one shared task
            waiting.setdefault(trial.tasks[-1].records, []).append(trial)
        ready: list[ray.ObjectRef] = []
        while not ready:
            ready, rest = ray.wait(list(waiting), num_returns=1, timeout=WATCH_SECONDS)
            self._losses.look()
        if rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        finished = []
        for ref in ready:
            for trial in waiting[ref]:
                finished.append(self._collect(trial))
                if self._judge is not None:  # the pruner learns what its rungs predicted
                    self._judge.actor.observe.remote(finished[-1])
                del self._trials[trial.id]
                self._losses.finished(trial.id)
                self._land(trial.id)
        return finished

    def close(self) -> None:
        """Cancel whatever is still running (if ``cancel_on_close``) and forget it."""
        for trial in self._trials.values() if self.cancel_on_close else ():
            for task in trial.tasks:
                if not task.shared:
                    ray.cancel(task.records, force=False)
        self._trials.clear()
        self._flights.clear()
        self._losses.close()

    def _starting_point(self, plans: list[StagePlan], trial: _Trial) -> tuple[int, Any]:
        """Where the trial starts: after the deepest stage that is cached (its first task
        loads it) or in flight (it chains onto that output reference)."""
        for plan in reversed(plans):
            if self.cache is not None and plan.stage.cache and plan.key in self.cache:
                return plan.index + 1, None
            flight = self._flights.get(plan.key)
            if flight is not None:
                trial.tasks = [dataclasses.replace(t, shared=True) for t in flight.tasks]
                return plan.index + 1, flight.value
        return 0, None

    def _submit_task(
        self,
        trial: _Trial,
        plans: list[StagePlan],
        index: int,
        upstream: ray.ObjectRef | None,
        resources: dict[str, Any],
    ) -> ray.ObjectRef:
        load = upstream is None and not trial.tasks
        value, records = self._remote.options(
            **resources,
            num_returns=2,
            max_retries=self.max_retries,
            retry_exceptions=False,
            name=f"memotune:{trial.id}:{plans[min(index, len(plans) - 1)].stage.name}",
        ).remote(
            self._losses.name,
            self._code,
            [self._pipeline_ref],
            trial.config,
            index,
            load,
            self.cache,
            trial.id,
            self._judge,
            [] if upstream is None else [upstream],
            *[task.records for task in trial.tasks],
        )
        trial.tasks.append(_Task(records, min(index, len(plans) - 1)))
        return value

    def _collect(self, trial: _Trial) -> TrialRecord:
        try:  # the usual case, in one round trip
            groups = ray.get([task.records for task in trial.tasks] + [trial.output])
        except RayError:
            return self._collect_failure(trial)
        records = [
            self._shared(r) if task.shared else r
            for task, group in zip(trial.tasks, groups, strict=False)
            for r in group
        ]
        return finish_trial(
            self.pipeline, trial.config, groups[-1], records, trial.id, trial.started
        )

    def _collect_failure(self, trial: _Trial) -> TrialRecord:
        """The record of a trial whose stage raised, or lost its worker too often."""
        records: list[StageRecord] = []
        for task in trial.tasks:
            try:
                group = ray.get(task.records)
            except RayTaskError as error:
                cause = error.cause
                if isinstance(cause, StageFailed):
                    failed = cause.before + [cause.record]
                    records += [self._shared(r) if task.shared else r for r in failed]
                    return failed_trial(
                        trial.config,
                        records,
                        str(cause),
                        cause.trace,
                        trial.id,
                        trial.started,
                        cause.status,
                    )
                return self._lost(trial, task, records, error)
            except RayError as error:  # the worker or node died more often than retried
                return self._lost(trial, task, records, error)
            records += [self._shared(r) if task.shared else r for r in group]
        try:
            output = ray.get(trial.output)
        except RayError as error:
            return self._lost(trial, trial.tasks[-1], records, error)
        return finish_trial(self.pipeline, trial.config, output, records, trial.id, trial.started)

    def _lost(
        self, trial: _Trial, task: _Task, records: list[StageRecord], error: Exception
    ) -> TrialRecord:
        name = trial.plans[task.stage].stage.name
        cause = getattr(error, "cause", None) or error  # a task error: what the task raised
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        message = f"stage '{name}' failed: {type(cause).__name__}: {reason}"
        return failed_trial(trial.config, records, message, None, trial.id, trial.started)

    def _shared(self, record: StageRecord) -> StageRecord:
        """Another trial computed (or loaded) this stage; this one waited for it."""
        shared = dataclasses.replace(record, hit=True, loaded=False, shared=True, load_seconds=0.0)
        shared.charged = self.pipeline.charge(shared)
        return shared

    def _land(self, trial_id: int) -> None:
        """A finished trial's outputs are in the cache now: later trials load them."""
        for key in [k for k, f in self._flights.items() if f.owner == trial_id]:
            del self._flights[key]
