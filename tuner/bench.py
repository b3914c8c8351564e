"""The comparison harness: every tuner on the same pipeline, seeds and budget.

Each (tuner, seed) run is an ordinary study in a throw-away folder with its
own cache, run in a separate process (several at once), so runs cannot help
one another. The table reports trials evaluated, the best objective (mean ±
standard error over seeds), what the budget was spent on, and the tuner's
seconds per proposal.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from memotune.cache import StageCache
from memotune.pipelines import Pipeline

from .budget import COST, TRIALS, Budget
from .study import Study

PipelineFactory = Callable[[], Pipeline]


@dataclass
class RunResult:
    tuner: str
    seed: int
    trials: int
    failed: int
    best: float | None
    budget: dict[str, float]
    tuner_seconds: float
    proposals: int
    curve: list[tuple[float, float | None]] = field(default_factory=list)  # (spent, best so far)

    @property
    def seconds_per_proposal(self) -> float:
        return self.tuner_seconds / self.proposals if self.proposals else 0.0


@dataclass
class RunFailure:
    """A run that raised instead of finishing its budget."""

    tuner: str
    seed: int
    error: str


def run_one(
    factory: PipelineFactory,
    tuner: str,
    seed: int,
    budget: float | None,
    trials: int | None,
    tuner_options: dict[str, Any] | None = None,
    workers: int = 1,
) -> RunResult:
    """One study of one tuner and seed, in a fresh folder and cache.

    With ``workers > 1`` the study keeps that many trials in flight: each
    proposal is made while the others are still pending (the in-process runner
    runs them in turn, so the comparison is per unit of budget, not of time).
    """
    torch.set_num_threads(1)
    pipeline = factory()
    if budget is not None:
        spend = Budget(COST, budget, charge_tuner=pipeline.cost_unit == "seconds")
    else:
        spend = Budget(TRIALS, float(trials))
    with tempfile.TemporaryDirectory(prefix="memotune-bench-") as folder:
        result = Study(
            pipeline,
            name=f"{tuner}-{seed}",
            budget=spend,
            tuner=tuner,
            seed=seed,
            storage=Path(folder) / "studies",
            cache=StageCache(Path(folder) / "cache"),
            max_consecutive_failures=10**9,
            tuner_options=tuner_options,
            workers=workers,
        ).run()
    sign = 1 if pipeline.maximize else -1
    curve, spent, best = [], 0.0, None
    for record in result.trials:
        spent += spend.trial_cost(record)
        if record.completed and (best is None or sign * record.objective > sign * best):
            best = record.objective
        curve.append((spent, best))
    proposals = [r for r in result.trials if "phase" in r.info]
    return RunResult(
        tuner=tuner,
        seed=seed,
        trials=len(result.trials),
        failed=sum(not r.completed for r in result.trials),
        best=result.best_value,
        budget=result.budget,
        tuner_seconds=sum(r.info.get("tuner_seconds", 0.0) for r in proposals),
        proposals=len(proposals),
        curve=curve,
    )


def compare(
    factory: PipelineFactory,
    tuners: Sequence[str],
    seeds: Sequence[int],
    *,
    budget: float | None = None,
    trials: int | None = None,
    processes: int = 2,
    tuner_options: dict[str, dict[str, Any]] | None = None,
    on_result: Callable[[RunResult | RunFailure], None] | None = None,
    workers: int = 1,
) -> tuple[list[RunResult], list[RunFailure]]:
    """Run every tuner on every seed; ``on_result`` hears each run as it ends.

    Runs start seed by seed, every tuner of a seed before the next seed's, so
    a slow spell on the machine falls on all tuners alike. A run that raises
    is reported as a :class:`RunFailure` and the others go on.
    """
    jobs = [(t, s) for s in seeds for t in tuners]
    options = tuner_options or {}
    results: list[RunResult] = []
    failures: list[RunFailure] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        futures = {
            pool.submit(run_one, factory, t, s, budget, trials, options.get(t), workers): (t, s)
            for t, s in jobs
        }
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
    order = {job: i for i, job in enumerate(jobs)}
    return sorted(results, key=lambda r: order[(r.tuner, r.seed)]), failures


def summarize(
    results: list[RunResult],
    *,
    pipeline: str,
    budget: float | None,
    trials: int | None,
    direction: str,
    cost_unit: str = "cost",
    workers: int = 1,
    failures: Sequence[RunFailure] = (),
) -> dict[str, Any]:
    """The comparison table as JSON-ready data (one row per tuner)."""
    table: dict[str, Any] = {}
    for tuner in dict.fromkeys(r.tuner for r in results):
        runs = [r for r in results if r.tuner == tuner]
        bests = [r.best for r in runs if r.best is not None]
        spent = [r.budget["spent"] for r in runs]
        table[tuner] = {
            "runs": len(runs),
            "trials_mean": statistics.mean(r.trials for r in runs),
            "trials_sem": _sem([r.trials for r in runs]),
            "best_mean": statistics.mean(bests) if bests else None,
            "best_sem": _sem(bests) if bests else None,
            "tuner_seconds_per_proposal": statistics.mean(r.seconds_per_proposal for r in runs),
            "tuner_seconds_total": statistics.mean(r.tuner_seconds for r in runs),
            "cache_hit_share": statistics.mean(
                r.budget["cache_loads"] / s if s else 0.0 for r, s in zip(runs, spent, strict=True)
            ),
            "tuner_share": statistics.mean(
                r.budget["tuner"] / s if s else 0.0 for r, s in zip(runs, spent, strict=True)
            ),
            "failed_mean": statistics.mean(r.failed for r in runs),
        }
    return {
        "pipeline": pipeline,
        "budget": budget,
        "trials": trials,
        "direction": direction,
        "cost_unit": cost_unit,
        "workers": workers,
        "seeds": len({r.seed for r in results}),
        "tuners": table,
        "runs": [asdict(r) for r in results],
        "failed_runs": [asdict(f) for f in failures],
    }


def _sem(values: Sequence[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
