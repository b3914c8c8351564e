"""The Ray Tune peer: Ray Tune's ASHA scheduler with Optuna's TPE as its searcher
(``raytune+asha`` in ``memotune bench``), on the same pipeline, data and budget.

A run starts a Ray instance of its own with one CPU, so its trials run one at a
time, as every other bench run's do. Each trial runs the pipeline's stages in a
Ray Tune trial as a Ray Tune user would: from scratch, with no stage cache (so
nothing is reused or continued), reporting the ``--prune`` metric to Ray Tune
each time a stage asks ``context.should_prune()``; Ray Tune's ASHA, on the same
rungs as memotune's, stops the trials that fall behind.

It is charged as a study is: the stages' compute seconds and the searcher's own
seconds (Ray Tune's scheduling and trial start-up are not charged, as memotune's
runners' are not). Once the budget is spent the searcher proposes no more trials
and the running one finishes, as in a study.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memotune.pipelines import Choice, Float, Int, Pipeline, StageRecord, TrialRecord
from memotune.pipelines.execution import StageFailed, execute_stage
from memotune.pipelines.records import PRUNED
from memotune.pipelines.runner import failed_trial, finish_trial
from memotune.tuner.budget import Budget, ProposalCharge
from memotune.tuner.pruning import ASHA

#: The peer's name in ``memotune bench --tuners``.
RAY_TUNE = "raytune+asha"
#: The phase its proposals are recorded under.
PHASE = "raytune"
#: Each result carries the trial's record so far, as JSON, under this key.
_RECORD = "memotune_record"
#: ... and the budget the trial has charged so far under this one.
_CHARGED = "memotune_charged"
#: The run gives up after this many failed trials in a row (as a study does by default):
#: a trial that fails before a stage runs charges nothing, so the budget would never end.
MAX_FAILED_IN_A_ROW = 5


def run_ray_tune(
    factory: Callable[[], Pipeline], seed: int, budget: Budget, pruner: ASHA
) -> list[TrialRecord]:
    """One Ray Tune run of the pipeline ``factory`` builds; its trials' records, in the
    order they finished (stopped ones as ``pruned``), each with its proposal's charge."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables on the console
    # the objective comes from the last stage: the steps of a stage before it report only
    # the pruned metric, which Ray Tune's strict check would refuse
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    pipeline = factory()
    pruner = pruner.for_pipeline(pipeline)
    searcher = _searcher(pipeline, seed, budget)
    scheduler = ASHAScheduler(
        time_attr="step",
        metric=pruner.metric,
        mode=pruner.mode,
        max_t=_max_step(pipeline, pruner),
        grace_period=pruner.min_step,
        reduction_factor=pruner.reduction,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trial, factory=factory, pruner=pruner), {"cpu": 1}
    )
    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        # trials run where the bench runs, as memotune's do (Ray Tune would move each to
        # a folder of its own, where a relative path to the pipeline or its data fails)
        runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}},
    )
    try:
        with tempfile.TemporaryDirectory(prefix="memotune-raytune-") as folder:
            grid = tune.Tuner(
                trainable,
                param_space=_param_space(pipeline),
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=-1,
                    max_concurrent_trials=1,
                    reuse_actors=True,  # one warm process, as a study's runner keeps
                ),
                run_config=tune.RunConfig(storage_path=folder, name="run", verbose=0),
            ).fit()
            results = [r.metrics for r in grid if r.metrics and _RECORD in r.metrics]
            if searcher.gave_up:  # e.g. the pipeline won't load
                last = str(grid.errors[-1]).strip().splitlines()[-1] if grid.errors else "?"
                raise RuntimeError(f"Ray Tune's last {MAX_FAILED_IN_A_ROW} trials failed: {last}")
    finally:
        ray.shutdown()
    records = []
    for result in results:
        record = TrialRecord.from_dict(json.loads(result[_RECORD]))
        seconds = searcher.seconds.get(result["trial_id"], 0.0)
        charge = ProposalCharge(seconds, seconds if budget.charge_tuner else 0.0, PHASE)
        record.info.update(charge.to_info())
        records.append(record)
    return sorted(records, key=lambda r: r.finished)


def _searcher(pipeline: Pipeline, seed: int, budget: Budget):
    """Ray Tune's Optuna searcher (TPE), timed, and stopped once the budget is spent."""
    import optuna
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    class BudgetedOptunaSearch(OptunaSearch):
        def __init__(self) -> None:
            super().__init__(
                metric=pipeline.objective,
                mode="max" if pipeline.maximize else "min",
                sampler=optuna.samplers.TPESampler(seed=seed),
            )
            self.seconds: dict[str, float] = {}  # Ray trial id → the seconds suggest took
            self.charged: dict[str, float] = {}  # Ray trial id → its stages' charge so far
            self.failed_in_a_row = 0  # a trial that fails before it runs charges nothing

        @property
        def gave_up(self) -> bool:
            """Whether the last trials all failed before they ran (nothing more will)."""
            return self.failed_in_a_row >= MAX_FAILED_IN_A_ROW

        def spent(self) -> float:
            tuner = sum(self.seconds.values()) if budget.charge_tuner else 0.0
            return sum(self.charged.values()) + tuner

        def suggest(self, trial_id: str) -> dict | None:
            if self.spent() >= budget.total or self.gave_up:
                return Searcher.FINISHED
            started = time.perf_counter()
            config = super().suggest(trial_id)
            self.seconds[trial_id] = time.perf_counter() - started
            return config

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            self.charged[trial_id] = float(result.get(_CHARGED, 0.0))
            if self.metric in result:  # Ray's own searcher needs the objective in every result
                super().on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error=False):
            if result and _CHARGED in result:
                self.charged[trial_id] = float(result[_CHARGED])
            self.failed_in_a_row = self.failed_in_a_row + 1 if error else 0
            super().on_trial_complete(trial_id, result, error)

    return BudgetedOptunaSearch()


def _param_space(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """The pipeline's search space as Ray Tune domains, one dict per stage."""
    from ray import tune

    def domain(param):
        if isinstance(param, Float):
            sample = tune.loguniform if param.log else tune.uniform
            return sample(param.low, param.high)
        if isinstance(param, Int):  # Ray's upper bounds are exclusive
            sample = tune.lograndint if param.log else tune.randint
            return sample(param.low, param.high + 1)
        if isinstance(param, Choice):
            return tune.choice(list(param.options))
        raise TypeError(f"no Ray Tune domain for {param!r}")

    return {s.name: {n: domain(p) for n, p in s.space.items()} for s in pipeline.stages}


def _max_step(pipeline: Pipeline, pruner: ASHA) -> int:
    """The most steps a trial can report: the largest fidelity of the stages pruned."""
    highs = [int(s.space[s.fidelity].high) for s in pruner.stages_of(pipeline)]
    if not highs:
        raise ValueError(f"pipeline '{pipeline.name}' has no stage with a fidelity to prune")
    return max(highs)


def _trial(config: dict, factory: Callable[[], Pipeline], pruner: ASHA) -> None:
    """One Ray Tune trial: the configuration's stages from scratch, reporting the pruned
    metric at every step a stage asks whether to stop, and the whole record at the end."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    pipeline = factory()
    plans = pipeline.plan(config)
    started = time.time()
    config = {plan.stage.name: plan.params for plan in plans}
    records: list[StageRecord] = []
    current: dict[str, Any] = {}

    def report(trial_id, stage, step, metrics) -> bool:
        value = metrics.get(pruner.metric)
        if not pruner.decides_at(stage, step) or value is None or not math.isfinite(value):
            return False
        seconds = time.perf_counter() - current["started"] - current["waited"]
        current["history"].append(dict(metrics))
        partial = StageRecord(
            stage=stage,
            key=current["key"],
            compute_seconds=seconds,
            cost=seconds,
            error=f"pruned after step {step:g}",
            history=list(current["history"]),
        )
        partial.charged = pipeline.charge(partial)
        # what the trial is if Ray Tune stops it here
        stopped = failed_trial(
            config, [*records, partial], partial.error, None, None, started, PRUNED
        )
        waiting = time.perf_counter()
        tune.report({"step": step, pruner.metric: value, **_summary(stopped)})
        current["waited"] += time.perf_counter() - waiting  # Ray Tune's time, not the stage's
        return False  # Ray Tune stops the trial itself

    judge = _RayTuneJudge(report, pruner.decides_at)
    upstream = pipeline.inputs
    for plan in plans:
        current.update(started=time.perf_counter(), key=plan.key, history=[], waited=0.0)
        try:
            upstream, record = execute_stage(pipeline, plan, upstream, None, [], judge=judge)
        except StageFailed as failure:
            records.append(_less(pipeline, failure.record, current["waited"]))
            record = failed_trial(config, records, failure.args[0], failure.trace, None, started)
            tune.report(_summary(record))
            return
        records.append(_less(pipeline, record, current["waited"]))
    final = finish_trial(pipeline, config, upstream, records, None, started)
    tune.report({**final.metrics, **_summary(final)})


@dataclass(frozen=True)
class _RayTuneJudge:
    """A stage's ``context.should_prune()`` in a Ray Tune trial: ``report`` hands the
    step's metric to Ray Tune (whose ASHA stops the trial itself) at the rungs
    ``decides_at`` names, the same as memotune's."""

    should_prune: Callable[[int | None, str, int, dict[str, float]], bool]
    decides_at: Callable[[str, int], bool]


def _less(pipeline: Pipeline, record: StageRecord, waited: float) -> StageRecord:
    """``record`` without the ``waited`` seconds its stage spent blocked in Ray Tune's
    ``report`` (a Ray Tune trial waits there until the scheduler has read the result)."""
    record.compute_seconds = max(0.0, record.compute_seconds - waited)
    record.cost = max(0.0, record.cost - waited)
    record.charged = pipeline.charge(record)
    return record


def _summary(record: TrialRecord) -> dict[str, Any]:
    record.finished = time.time()
    return {_CHARGED: record.charged, _RECORD: json.dumps(record.to_dict())}
