"""What a study's trials add up to: the trials table, the convergence curve,
the cost breakdown by stage and the best trials.

Pure functions over trial records; the MLflow artifacts and ``memotune show``
are both made from them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memotune.pipelines import TrialRecord, improves
from memotune.tuner.budget import Budget, ProposalCharge


@dataclass
class Point:
    """One finished trial on the convergence curve."""

    trial_id: int | None
    completed: bool
    objective: float | None
    cost: float  # what the trial added to the budget spent
    spent: float  # budget spent once this trial was charged
    best: float | None  # best objective so far (None until a trial completes)
    cache_hits: int


@dataclass
class StageCost:
    """What one stage cost the study, and what its cache hits spared."""

    stage: str
    runs: int = 0  # computed (misses)
    hits: int = 0
    compute: float = 0.0  # charged by the runs
    loads: float = 0.0  # charged by the hits
    saved: float = 0.0  # true cost of the hits minus what they were charged

    @property
    def charged(self) -> float:
        return self.compute + self.loads


def replay_budget(records: Sequence[TrialRecord], template: Budget) -> list[float]:
    """The budget spent after each record, charging them in order into a fresh copy of
    ``template`` (its kind and total)."""
    return template.fresh().charge_all(records)


def convergence(
    records: Sequence[TrialRecord], spent: Sequence[float], maximize: bool
) -> list[Point]:
    """Best objective so far against the budget spent, one point per finished trial."""
    points: list[Point] = []
    for record, after in zip(records, spent, strict=True):
        points.append(next_point(points[-1] if points else None, record, after, maximize))
    return points


def next_point(previous: Point | None, record: TrialRecord, spent: float, maximize: bool) -> Point:
    """The point after ``previous`` for a trial that brought the budget spent to ``spent``."""
    best = previous.best if previous else None
    if record.completed and record.objective is not None:
        if improves(record.objective, best, maximize):
            best = record.objective
    return Point(
        trial_id=record.trial_id,
        completed=record.completed,
        objective=record.objective,
        cost=spent - (previous.spent if previous else 0.0),
        spent=spent,
        best=best,
        cache_hits=record.cache_hits,
    )


def stage_costs(records: Sequence[TrialRecord]) -> list[StageCost]:
    """Per stage, in pipeline order: runs and hits, what they were charged, what was saved."""
    costs: dict[str, StageCost] = {}
    for record in records:
        for stage in record.stages:
            cost = costs.setdefault(stage.stage, StageCost(stage.stage))
            if stage.hit:
                cost.hits += 1
                cost.loads += stage.charged
                cost.saved += max(0.0, stage.cost - stage.charged)
            else:
                cost.runs += 1
                cost.compute += stage.charged
    return list(costs.values())


def cost_table(records: Sequence[TrialRecord], budget: dict[str, Any]) -> tuple[list, list]:
    """The cost breakdown as a table: one row per stage, then the tuner (its runs are
    proposals; it is charged only on budgets in seconds) and the total (stage runs and
    hits, everything charged). ``budget`` is the study's ``Budget.summary()``."""
    headers = ["stage", "runs", "hits", "compute", "cache_loads", "charged", "saved_by_cache"]
    rows: list[list] = []
    for cost in stage_costs(records):
        rows.append(
            [cost.stage, cost.runs, cost.hits, cost.compute, cost.loads, cost.charged, cost.saved]
        )
    runs, hits = sum(r[1] for r in rows), sum(r[2] for r in rows)
    proposals = sum(ProposalCharge.from_record(r).proposed for r in records)
    rows.append(["(tuner)", proposals, 0, budget["tuner"], 0.0, budget["tuner"], 0.0])
    rows.append(
        [
            "total",
            runs,
            hits,
            sum(r[3] for r in rows),
            sum(r[4] for r in rows),
            sum(r[5] for r in rows),
            sum(r[6] for r in rows),
        ]
    )
    return headers, rows


def best_trials(records: Sequence[TrialRecord], maximize: bool, n: int) -> list[TrialRecord]:
    """The ``n`` best completed trials, best first (ties: the earlier trial first)."""
    completed = [r for r in records if r.completed and r.objective is not None]
    sign = -1 if maximize else 1
    return sorted(completed, key=lambda r: (sign * r.objective, _order(r.trial_id)))[:n]


def param_columns(records: Sequence[TrialRecord]) -> list[str]:
    """``stage.param`` for every parameter the records set, in first-seen order."""
    columns: dict[str, None] = {}
    for record in records:
        for stage, params in record.config.items():
            for name in params:
                columns[f"{stage}.{name}"] = None
    return list(columns)


def trials_table(records: Sequence[TrialRecord], points: Sequence[Point]) -> tuple[list, list]:
    """One row per trial, in the order they finished: outcome, settings, what the tuner
    knew, what each stage cost and whether it was a hit."""
    params = param_columns(records)
    stages = list(dict.fromkeys(s.stage for r in records for s in r.stages))
    metrics = list(dict.fromkeys(m for r in records for m in r.metrics if m != "objective"))
    headers = [
        "trial",
        "status",
        "objective",
        *metrics,
        *params,
        "phase",
        "acquisition",
        "eta",
        "prefix_depth",
        "reused_prefix",
        "cache_hits",
        "trial_cost",
        "budget_spent",
        "tuner_seconds",
    ]
    for stage in stages:
        headers += [f"{stage}.hit", f"{stage}.charged", f"{stage}.compute_seconds"]
        headers += [f"{stage}.load_seconds"]
    headers += ["started", "finished", "error"]
    rows = []
    for record, point in zip(records, points, strict=True):
        by_stage = {s.stage: s for s in record.stages}
        row = [record.trial_id, record.status, record.objective]
        row += [record.metrics.get(m) for m in metrics]
        row += [record.config.get(p.split(".", 1)[0], {}).get(p.split(".", 1)[1]) for p in params]
        info, charge = record.info, ProposalCharge.from_record(record)
        row += [charge.phase, *(info.get(k) for k in ("acquisition", "eta", "prefix_depth"))]
        row += [record.reused_depth, record.cache_hits, point.cost, point.spent]
        row += [charge.seconds if charge.proposed else None]
        for stage in stages:
            s = by_stage.get(stage)
            row += (
                [None, None, None, None]
                if s is None
                else [
                    int(s.hit),
                    s.charged,
                    s.compute_seconds,
                    s.load_seconds,
                ]
            )
        row += [record.started, record.finished, record.error]
        rows.append(row)
    return headers, rows


def to_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text; settings that are not plain scalars are written as JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def _order(trial_id: int | None) -> int:
    return -1 if trial_id is None else trial_id


def completed_params(records: Sequence[TrialRecord]) -> tuple[list[str], list[TrialRecord]]:
    """The ``stage.param`` columns and the completed trials (with an objective)."""
    done = [r for r in records if r.completed and r.objective is not None]
    return param_columns(done), done


def param_value(record: TrialRecord, column: str) -> Any:
    stage, _, name = column.partition(".")
    return record.config.get(stage, {}).get(name)


def parameter_importance(records: Sequence[TrialRecord], seed: int = 0) -> dict[str, float]:
    """How much each parameter explains the objective over the completed trials: a random
    forest's mean decrease in impurity, summing to 1 (as Optuna's
    ``MeanDecreaseImpurityImportanceEvaluator``); empty with fewer than 4 trials."""
    columns, done = completed_params(records)
    if len(done) < 4 or not columns:
        return {}
    from sklearn.ensemble import RandomForestRegressor

    X = list(zip(*(numeric_column(done, c)[0] for c in columns), strict=True))
    forest = RandomForestRegressor(n_estimators=64, max_depth=8, random_state=seed)
    forest.fit(X, [r.objective for r in done])
    ranked = sorted(zip(columns, forest.feature_importances_, strict=True), key=lambda p: -p[1])
    return {column: float(value) for column, value in ranked}


def numeric_column(
    records: Sequence[TrialRecord], column: str
) -> tuple[list[float], list[str] | None]:
    """A setting over ``records`` as numbers, and for a choice its labels: a choice's
    value is its label's index among the labels seen, in sorted order."""
    values = [param_value(r, column) for r in records]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    labels = sorted({str(v) for v in values})
    index = {label: i for i, label in enumerate(labels)}
    return [float(index[str(v)]) for v in values], labels


def summary_markdown(
    records: Sequence[TrialRecord], budget: dict[str, Any], *, objective: str, maximize: bool
) -> str:
    """A short Markdown summary of a study: best value and configuration, budget by
    stage, the tuner's share and what the cache saved (the MLflow parent run's
    description)."""
    best = best_trials(records, maximize, 1)
    failed = sum(r.failed for r in records)
    pruned = sum(r.pruned for r in records)
    lines = [f"**{len(records)} trials** ({failed} failed, {pruned} pruned)."]
    if best:
        trial = best[0]
        lines.append(f"**Best {objective}: {trial.objective:.6g}** (trial {trial.trial_id})")
        lines.append("")
        lines.append("| stage | parameter | value |\n|---|---|---|")
        for stage, params in trial.config.items():
            lines += [f"| {stage} | {name} | {value} |" for name, value in params.items()]
    headers, rows = cost_table(records, budget)
    lines += ["", "Budget by stage:", "", "| " + " | ".join(headers) + " |"]
    lines.append("|" + "---|" * len(headers))
    for row in rows:
        lines.append("| " + " | ".join(_markdown_cell(v) for v in row) + " |")
    spent = budget["spent"] or 1.0
    lines.append("")
    lines.append(
        f"The tuner took {100 * budget['tuner'] / spent:.1f}% of the budget spent "
        f"({budget['tuner_seconds']:.1f} s); the cache saved {budget['saved_by_cache']:.4g} "
        f"({100 * budget['saved_by_cache'] / (spent + budget['saved_by_cache']):.0f}% of what "
        "running every stage would have cost)."
    )
    return "\n".join(lines)


def _markdown_cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
