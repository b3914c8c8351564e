"""The comparison table: per tuner, means and standard errors over seeds, the paper's
gain since warm-up, and a paired comparison with a reference tuner.

Test score
    Each run's incumbent is its best completed trial by the tuning objective
    (what a user would pick); its test score is the pipeline's ``test_metric``
    (measured on a split the tuner never saw), or the objective for a pipeline
    without one. The table reports the mean ± standard error over seeds.

Gain since warm-up (the EEIPU paper's measure, arXiv 2411.03731)
    Per run, how much the incumbent's objective (the validation metric the
    tuner sees, as in the paper) improved from the end of the tuner's warm-up
    to the end of the run, in the direction of the objective (never negative):
    ``gain = ±(best at the end − best after the warm-up trials)``. The warm-up
    is the leading trials the tuner proposed in its ``"warmup"`` phase, or the
    first 10 trials for a tuner that marks none. Per tuner, the mean gain over
    seeds relative to the average baseline's, where the baselines are all the
    other tuners in the table:
    ``gain_vs_baselines = 100 · (mean gain / mean over the others of their mean gain − 1)``,
    in percent (the paper reports +108% for EEIPU on its real pipelines). None
    where the others gained nothing on average.

Paired comparison
    Per tuner other than the reference, over the seeds both ran: wins, ties and
    losses of the tuner's test score against the reference's on the same seed
    (from the tuner's side: a win is a better test score than the reference's),
    and the two-sided Wilcoxon signed-rank p-value of the paired differences
    (``scipy.stats.wilcoxon``; tied seeds are dropped, as its default does).
    The p-value is 1.0 when every seed is a tie and None with fewer than two
    paired seeds.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ._runs import RunFailure, RunResult


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
    objective: str = "objective",
    test_metric: str | None = None,
    reference: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The comparison table as JSON-ready data (one row per tuner). ``reference`` (default:
    the first tuner) is the tuner every other is compared with, seed by seed."""
    sign = 1.0 if direction == "maximize" else -1.0
    tuners = list(dict.fromkeys(r.tuner for r in results))
    if reference is None and tuners:
        reference = tuners[0]
    runs_of = {t: [r for r in results if r.tuner == t] for t in tuners}
    gains = {t: [g for r in runs_of[t] if (g := run_gain(r, sign)) is not None] for t in tuners}
    mean_gain = {t: statistics.mean(g) if g else None for t, g in gains.items()}
    table: dict[str, Any] = {}
    for tuner in tuners:
        runs = runs_of[tuner]
        tests = [r.test for r in runs if r.test is not None]
        bests = [r.best for r in runs if r.best is not None]
        charged = [_charged(r.budget) for r in runs]
        table[tuner] = {
            "runs": len(runs),
            "trials_mean": statistics.mean(r.trials for r in runs),
            "trials_sem": sem([r.trials for r in runs]),
            "test_mean": statistics.mean(tests) if tests else None,
            "test_sem": sem(tests) if tests else None,
            "best_mean": statistics.mean(bests) if bests else None,
            "best_sem": sem(bests) if bests else None,
            "gain_mean": mean_gain[tuner],
            "gain_sem": sem(gains[tuner]) if gains[tuner] else None,
            "gain_vs_baselines": relative_gain(tuner, mean_gain),
            "paired": (
                None
                if tuner == reference or reference not in runs_of
                else paired(runs, runs_of[reference], sign, reference)
            ),
            "tuner_seconds_per_proposal": statistics.mean(r.seconds_per_proposal for r in runs),
            "tuner_seconds_total": statistics.mean(r.tuner_seconds for r in runs),
            "cache_hit_share": statistics.mean(
                r.budget["cache_loads"] / c if c else 0.0
                for r, c in zip(runs, charged, strict=True)
            ),
            "tuner_share": statistics.mean(
                r.budget["tuner"] / c if c else 0.0 for r, c in zip(runs, charged, strict=True)
            ),
            "failed_mean": statistics.mean(r.failed for r in runs),
            "pruned_mean": statistics.mean(r.pruned for r in runs),
            "continued_steps_mean": statistics.mean(r.continued_steps for r in runs),
        }
    return {
        "pipeline": pipeline,
        "budget": budget,
        "trials": trials,
        "objective": objective,
        "direction": direction,
        "test_metric": test_metric,
        "cost_unit": cost_unit,
        "workers": workers,
        "seeds": len({r.seed for r in results}),
        "reference": reference,
        "tuners": table,
        "runs": [asdict(r) for r in results],
        "failed_runs": [asdict(f) for f in failures],
        "provenance": provenance,
    }


def run_gain(run: RunResult, sign: float) -> float | None:
    """How much the run's incumbent objective improved after its warm-up (≥ 0)."""
    if run.best is None or run.warmup_best is None:
        return None
    return sign * (run.best - run.warmup_best)


def relative_gain(tuner: str, mean_gain: dict[str, float | None]) -> float | None:
    """The tuner's mean gain relative to the average of the other tuners' mean gains, in %."""
    mine = mean_gain.get(tuner)
    others = [g for t, g in mean_gain.items() if t != tuner and g is not None]
    if mine is None or not others:
        return None
    baseline = statistics.mean(others)
    return 100.0 * (mine / baseline - 1.0) if baseline > 0 else None


def paired(
    runs: Sequence[RunResult], reference_runs: Sequence[RunResult], sign: float, reference: str
) -> dict[str, Any]:
    """Seed by seed, the runs' test scores against the reference's (see the module)."""
    theirs = {r.seed: r.test for r in reference_runs if r.test is not None}
    differences = [
        sign * (r.test - theirs[r.seed])
        for r in sorted(runs, key=lambda r: r.seed)
        if r.test is not None and r.seed in theirs
    ]
    return {
        "reference": reference,
        "seeds": len(differences),
        "wins": sum(d > 0 for d in differences),
        "ties": sum(d == 0 for d in differences),
        "losses": sum(d < 0 for d in differences),
        "mean_difference": statistics.mean(differences) if differences else None,
        "p_value": wilcoxon_p(differences),
    }


def wilcoxon_p(differences: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences: None with fewer than
    two pairs, 1.0 when every pair is a tie."""
    if len(differences) < 2:
        return None
    if not any(differences):
        return 1.0
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small samples and ties: scipy warns, still answers
        try:
            p = float(wilcoxon(differences).pvalue)
        except ValueError:
            return None
    return p if math.isfinite(p) else None


def sem(values: Sequence[float]) -> float:
    """Standard error of the mean (0 for fewer than two values)."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def _charged(budget: dict[str, float]) -> float:
    """Everything a run charged in cost units, whatever its budget's kind."""
    return budget["compute"] + budget["cache_loads"] + budget["tuner"]
