"""What each MLflow run holds, as plain values (the writer turns them into MLflow calls).

A trial run: the configuration as ``stage.param`` params; the pipeline's
metrics (objective included), per-stage compute and load seconds, cost and
hit, cache hits, the tuner's seconds, acquisition value and η as metrics; the
stages' stepped metrics (``StageContext.report``) as ``stage.metric`` at
their steps; status, tuner, phase, reused prefix length and failure message
as tags.

The study's parent run: the study settings as params, and the best value so
far as the stepped metric ``best_value``. MLflow steps are integers, so the
step is the budget spent in thousandths of the budget's unit (milliseconds
for a budget in seconds) — or, for a trial-count budget, the number of
trials finished.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from memotune.pipelines import TrialRecord
from memotune.tuner.budget import TRIALS, ProposalCharge

STUDY_TAG = "memotune.study"
CREATED_TAG = "memotune.study_created"
ROLE_TAG = "memotune.role"
TRIAL_TAG = "memotune.trial"
#: A run's or an experiment's description (Markdown) in the MLflow UI.
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

_INFO_METRICS = ("acquisition", "eta", "prefix_depth")
_TAG_LIMIT = 5000


@dataclass(frozen=True)
class MetricValue:
    key: str
    value: float
    step: int = 0


def budget_step(spent: float, kind: str) -> int:
    """The MLflow step for ``spent``: thousandths of the budget unit, or trials finished."""
    return int(round(spent)) if kind == TRIALS else int(round(spent * 1000))


def metric_key(name: str) -> str:
    """``name`` with the characters MLflow does not allow in keys replaced by ``_``."""
    return re.sub(r"[^/\w.\- :]", "_", str(name))[:250] or "_"


def trial_params(config: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {
        metric_key(f"{stage}.{name}"): _param_text(value)
        for stage, params in config.items()
        for name, value in params.items()
    }


def trial_run_name(trial_id: int) -> str:
    return f"trial-{trial_id}"


def start_tags(trial_id: int, info: dict[str, Any], tuner: str) -> dict[str, str]:
    """The tags a trial run carries from the moment it starts."""
    tags = {TRIAL_TAG: str(trial_id), "status": "running", "tuner": tuner}
    charge = ProposalCharge.from_info(info)
    if charge.proposed:
        tags["phase"] = charge.phase
    if info.get("rerun"):
        tags["rerun"] = "true"
    return tags


def trial_tags(record: TrialRecord, tuner: str) -> dict[str, str]:
    tags = start_tags(record.trial_id if record.trial_id is not None else -1, record.info, tuner)
    tags["status"] = record.status
    tags["reused_prefix"] = str(record.reused_depth)
    nodes = sorted({s.node for s in record.stages if s.node})
    if nodes:
        tags["nodes"] = ",".join(nodes)
    if record.error:
        tags["error"] = record.error[:_TAG_LIMIT]
    return tags


def trial_metrics(record: TrialRecord, trial_cost: float) -> list[MetricValue]:
    """The trial's scalar metrics, then its stages' stepped histories."""
    values: dict[str, float] = {}
    for name, value in record.metrics.items():
        _put(values, metric_key(name), value)
    charge = ProposalCharge.from_record(record)
    if charge.proposed:
        _put(values, "tuner_seconds", charge.seconds)
    for name in _INFO_METRICS:
        _put(values, name, record.info.get(name))
    _put(values, "cache_hits", record.cache_hits)
    _put(values, "forecast", record.forecast)  # a pruned trial's, where its pruner made one
    _put(values, "trial_cost", trial_cost)
    for stage in record.stages:
        prefix = metric_key(stage.stage)
        _put(values, f"{prefix}.compute_seconds", stage.compute_seconds)
        _put(values, f"{prefix}.load_seconds", stage.load_seconds)
        _put(values, f"{prefix}.cost", stage.cost)
        _put(values, f"{prefix}.charged", stage.charged)
        _put(values, f"{prefix}.hit", int(stage.hit))
        _put(values, f"{prefix}.resumed_from", stage.resumed_from)  # None: not a continuation
        for name, value in stage.metrics.items():
            if name not in record.metrics:  # the last stage's metrics are the pipeline's
                _put(values, metric_key(f"{stage.stage}.{name}"), value)
    metrics = [MetricValue(key, value) for key, value in values.items()]
    for stage in record.stages:
        for index, entry in enumerate(stage.history):
            step = _step(entry.get("step", index))
            for name, value in entry.items():
                number = _number(value)
                if name != "step" and number is not None:
                    metrics.append(MetricValue(metric_key(f"{stage.stage}.{name}"), number, step))
    return metrics


def study_params(settings: dict[str, Any]) -> dict[str, str]:
    """The settings a study keeps for life (the budget total may grow: it is a tag)."""
    params = {
        name: _param_text(settings.get(name))
        for name in ("pipeline", "objective", "direction", "tuner", "seed", "budget_kind")
    }
    params["tuner_options"] = json.dumps(settings.get("tuner_options") or {}, sort_keys=True)
    try:
        space = json.loads(settings.get("space") or "[]")
    except (TypeError, ValueError):
        space = []
    for stage, name, _kind, declared in space:
        params[metric_key(f"space.{stage}.{name}")] = str(declared)
    return params


def experiment_description(name: str, settings: dict[str, Any]) -> str:
    """The experiment's description in the MLflow UI (Markdown)."""
    return (
        f"memotune study **{name}**: pipeline `{settings.get('pipeline')}`, tuner "
        f"`{settings.get('tuner')}`, {settings.get('direction')} "
        f"`{settings.get('objective')}`. Each sweep is a parent run (its description "
        "has the best configuration and where the budget went; its artifacts the plots, "
        "`plots.html` interactive); each trial is a run nested under it, with its "
        "settings as `stage.param` parameters."
    )


#: The experiment's saved view of its runs table (MLflow's "shared view", an experiment
#: tag), opened with ``?viewStateShareKey=`` in the URL: see :func:`runs_page`.
VIEW_KEY = "memotune"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"


def runs_view(settings: dict[str, Any]) -> str:
    """The runs table as a study wants it seen (JSON): every trial sorted by the objective,
    with the objective, the trial's cost and cache hits, its status and every setting as
    columns (MLflow shows none of them by default)."""
    objective = metric_key(str(settings.get("objective", "objective")))
    try:
        space = json.loads(settings.get("space") or "[]")
    except (TypeError, ValueError):
        space = []
    columns = [f"metrics.`{objective}`", "metrics.`trial_cost`", "metrics.`cache_hits`"]
    columns += [f"params.`{metric_key(f'{stage}.{name}')}`" for stage, name, _, _ in space]
    columns += ["tags.`status`", "tags.`phase`"]
    return json.dumps(
        {
            "selectedColumns": columns,
            "orderByKey": f"metrics.`{objective}`",
            "orderByAsc": settings.get("direction") != "maximize",
            "runsHiddenMode": "SHOW_ALL",  # the chart view plots every trial, not the first 10
        }
    )


def runs_page(address: str, experiment_id: str) -> str:
    """The URL of an experiment's runs in the classic model-training layout, in the view
    :func:`runs_view` saved."""
    return (
        f"{address.rstrip('/')}/#/experiments/{experiment_id}/runs?"
        f"viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"
    )


def run_page(address: str, experiment_id: str, run_id: str) -> str:
    """The URL of one run (a sweep's parent run: its summary and plots) in the
    model-training layout."""
    return (
        f"{address.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?"
        "workflowType=machine_learning"
    )


def study_tags(name: str, settings: dict[str, Any], path: str) -> dict[str, str]:
    return {
        STUDY_TAG: name,
        CREATED_TAG: repr(float(settings.get("created", 0.0))),
        ROLE_TAG: "study",
        RUN_NAME_TAG: name,
        "budget_total": _param_text(settings.get("budget_total")),
        "storage": path,
    }


def summary_metrics(budget_summary: dict[str, Any], trials: int, failed: int) -> dict[str, float]:
    """The study's totals, logged on the parent run when it ends."""
    metrics = {f"budget_{k}": float(v) for k, v in budget_summary.items() if _number(v) is not None}
    metrics["trials"] = float(trials)
    metrics["failed_trials"] = float(failed)
    return metrics


def _put(values: dict[str, float], key: str, value: Any) -> None:
    number = _number(value)
    if number is not None:
        values[key] = number


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def _step(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None and math.isfinite(number) else 0


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, sort_keys=True, default=str)
