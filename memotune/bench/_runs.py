"""Running the comparison: every tuner on the same pipeline, seeds and budget.

Each (tuner, seed) run is an ordinary study in a throw-away folder with its
own cache, run in a separate process (several at once), so runs cannot help
one another. A run keeps what the tables need: its incumbent (chosen by the
tuning objective, as a user would choose) and that incumbent's test score, the
incumbent at the end of the tuner's warm-up, what the budget was spent on,
and the anytime curve.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memotune.cache import StageCache
from memotune.pipelines import Pipeline, TrialRecord, best_trial
from memotune.tuner.budget import Budget, ProposalCharge
from memotune.tuner.pruning import PRUNED_SUFFIX, Pruner
from memotune.tuner.registry import TunerSpec, tuner_spec
from memotune.tuner.study import Study

from ._raytune import RAY_TUNE, run_ray_tune

PipelineFactory = Callable[[], Pipeline]

#: Warm-up trials assumed for tuners that do not mark a warm-up phase (random, TPE):
#: the GP tuners' default design size, so every tuner's gain is measured from the same point.
WARMUP_TRIALS = 10


@dataclass
class RunResult:
    """One study of one tuner and seed.

    ``best`` is the incumbent's objective and ``test`` its test score (the
    pipeline's ``test_metric``, or the objective where it has none);
    ``warmup_best`` is the incumbent's objective once the first ``warmup``
    trials had finished. ``curve`` has one ``(spent, best, test)`` point per
    trial, in the order they finished: the budget charged so far (in the
    pipeline's cost unit, the tuner's charged seconds included) and the
    incumbent's objective and test score after that trial.
    """

    tuner: str
    seed: int
    trials: int
    failed: int
    best: float | None
    test: float | None
    warmup: int
    warmup_best: float | None
    budget: dict[str, float]
    tuner_seconds: float
    proposals: int
    curve: list[tuple[float, float | None, float | None]] = field(default_factory=list)
    pruned: int = 0
    #: fidelity steps (epochs) that trials took from cached checkpoints instead of running
    continued_steps: int = 0

    @property
    def seconds_per_proposal(self) -> float:
        return self.tuner_seconds / self.proposals if self.proposals else 0.0


@dataclass
class RunFailure:
    """A run that raised instead of finishing its budget."""

    tuner: str
    seed: int
    error: str


def score_on_test(pipeline: Pipeline, record: TrialRecord | None) -> float | None:
    """What ``record`` scores on the test split: its ``pipeline.test_metric``, or its
    objective for a pipeline without one (e.g. a noise-free synthetic objective)."""
    if record is None:
        return None
    if pipeline.test_metric is None:
        return record.objective
    value = record.metrics.get(pipeline.test_metric)
    return None if value is None else float(value)


def warmup_length(records: Sequence[TrialRecord], default: int = WARMUP_TRIALS) -> int:
    """How many of ``records`` (in the order they finished) were the tuner's warm-up: the
    leading trials proposed in the ``"warmup"`` phase, or ``default`` for a tuner that
    marks no warm-up."""
    charges = [ProposalCharge.from_record(r) for r in records]
    if not any(c.warmup for c in charges):
        return min(default, len(records))
    count = 0
    for charge in charges:
        if not charge.warmup:
            break
        count += 1
    return count


def anytime(
    pipeline: Pipeline, records: Sequence[TrialRecord], budget: Budget
) -> list[tuple[float, float | None, float | None]]:
    """After each trial: the cost charged so far, the incumbent's objective and test score.
    The last point is the run's final incumbent, the trial that crossed the budget included."""
    charged, incumbent, curve = budget.fresh(), None, []
    for record in records:
        charged.charge(record)
        incumbent = best_trial([r for r in (incumbent, record) if r is not None], pipeline.maximize)
        objective = incumbent.objective if incumbent else None
        curve.append((charged.charged, objective, score_on_test(pipeline, incumbent)))
    return curve


def run_one(
    factory: PipelineFactory,
    tuner: TunerSpec,
    seed: int,
    budget: float | None,
    trials: int | None,
    tuner_options: dict[str, Any] | None = None,
    workers: int = 1,
    pruner: Pruner | None = None,
) -> RunResult:
    """One study of one tuner and seed, in a fresh folder and cache.

    With ``workers > 1`` the study keeps that many trials in flight: each
    proposal is made while the others are still pending (the in-process runner
    runs them in turn, so the comparison is per unit of budget, not of time).
    A tuner named ``NAME+asha`` runs as ``NAME`` with ``pruner``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # runs go side by side: one thread each
    pipeline = factory()
    spend = Budget.for_pipeline(pipeline, budget=budget, trials=trials)
    label = tuner if isinstance(tuner, str) else tuner_spec(tuner)
    if isinstance(tuner, str) and tuner.endswith(PRUNED_SUFFIX):
        if pruner is None:
            raise ValueError(f"{tuner} needs a pruner (memotune bench --prune METRIC)")
        tuner = tuner.removesuffix(PRUNED_SUFFIX)
    else:
        pruner = None
    try:
        if label == RAY_TUNE:
            records = run_ray_tune(factory, seed, spend, pruner)
        else:
            records = _study(pipeline, tuner, seed, spend, tuner_options, workers, pruner)
    finally:
        torch.set_num_threads(threads)
    warmup = warmup_length(records)
    warmup_best = best_trial(records[:warmup], pipeline.maximize)
    incumbent = best_trial(records, pipeline.maximize)
    charges = [c for c in map(ProposalCharge.from_record, records) if c.proposed]
    return RunResult(
        tuner=label,
        seed=seed,
        trials=len(records),
        failed=sum(r.failed for r in records),
        best=incumbent.objective if incumbent else None,
        test=score_on_test(pipeline, incumbent),
        warmup=warmup,
        warmup_best=warmup_best.objective if warmup_best else None,
        budget=_spent(spend, records),
        tuner_seconds=sum(c.seconds for c in charges),
        proposals=len(charges),
        curve=anytime(pipeline, records, spend),
        pruned=sum(r.pruned for r in records),
        continued_steps=sum(s.resumed_from or 0 for r in records for s in r.stages),
    )


def _study(
    pipeline: Pipeline,
    tuner: TunerSpec,
    seed: int,
    budget: Budget,
    tuner_options: dict[str, Any] | None,
    workers: int,
    pruner: Pruner | None,
) -> list[TrialRecord]:
    """The trials of one memotune study, in a fresh folder and cache."""
    with tempfile.TemporaryDirectory(prefix="memotune-bench-") as folder:
        return (
            Study(
                pipeline,
                name=f"run-{seed}",
                budget=budget,
                tuner=tuner,
                seed=seed,
                storage=Path(folder) / "studies",
                cache=StageCache(Path(folder) / "cache"),
                max_consecutive_failures=10**9,
                tuner_options=tuner_options,
                workers=workers,
                pruner=pruner,
            )
            .run()
            .trials
        )


def _spent(budget: Budget, records: Sequence[TrialRecord]) -> dict[str, float]:
    """What ``records`` charged ``budget``, as its summary reports it."""
    charged = budget.fresh()
    charged.charge_all(records)
    return charged.summary()


def compare(
    factory: PipelineFactory,
    tuners: Sequence[TunerSpec],
    seeds: Sequence[int],
    *,
    budget: float | None = None,
    trials: int | None = None,
    processes: int = 2,
    tuner_options: dict[str, dict[str, Any]] | None = None,
    on_result: Callable[[RunResult | RunFailure], None] | None = None,
    workers: int = 1,
    pruner: Pruner | None = None,
) -> tuple[list[RunResult], list[RunFailure]]:
    """Run every tuner on every seed; ``on_result`` hears each run as it ends.

    ``tuners`` are registered names, import paths or Tuner classes (a class is
    passed to the run processes by its import path). Runs start seed by seed,
    every tuner of a seed before the next seed's, so a slow spell on the
    machine falls on all tuners alike. A run that raises is reported as a
    :class:`RunFailure` and the others go on. Interrupted (Ctrl-C, or SIGTERM
    raised as an interrupt), the running runs are stopped at once and the
    interrupt goes on up; ``on_result`` has heard every run that finished.
    A tuner listed as ``NAME+asha`` runs as NAME with ``pruner`` (a fresh copy per run).
    """
    names = [t if isinstance(t, str) else tuner_spec(t) for t in tuners]
    jobs = [(t, s) for s in seeds for t in names]
    options = tuner_options or {}
    results: list[RunResult] = []
    failures: list[RunFailure] = []
    context = multiprocessing.get_context("spawn")
    others = set(multiprocessing.active_children())  # the caller's, left alone on interrupt
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        futures = {
            pool.submit(run_one, factory, t, s, budget, trials, options.get(t), workers, pruner): (
                t,
                s,
            )
            for t, s in jobs
        }
        try:
            for future in as_completed(futures):
                try:
                    outcome: RunResult | RunFailure = future.result()
                    results.append(outcome)
                except Exception as error:  # noqa: BLE001 - one broken run must not void the rest
                    tuner, seed = futures[future]
                    outcome = RunFailure(tuner, seed, f"{type(error).__name__}: {error}")
                    failures.append(outcome)
                if on_result:
                    on_result(outcome)
        except BaseException:  # Ctrl-C, SIGTERM: stop the running runs, start no other
            pool.shutdown(wait=False, cancel_futures=True)
            for child in set(multiprocessing.active_children()) - others:
                child.terminate()  # the pool's run processes
            raise
    order = {job: i for i, job in enumerate(jobs)}
    return sorted(results, key=lambda r: order[(r.tuner, r.seed)]), failures
