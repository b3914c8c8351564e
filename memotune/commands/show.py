"""``memotune show STUDY``: a study's best trials and where its budget went."""

from __future__ import annotations

import argparse
import json

from memotune import report
from memotune.catalog import StoredStudy, load_study
from memotune.formatting import table
from memotune.tuner.journal import DEFAULT_STORAGE

EXAMPLES = """examples:
  memotune show digits
  memotune show digits --top 20
  memotune show digits --trial 7      # one trial whole: config, stages, metrics, traceback
  memotune show synthetic-3-run --storage /shared/memotune-studies --json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show",
        help="a study's best trials and budget breakdown",
        description=(
            "Show a study: its settings, its best trials with their configurations, and "
            "where the budget went, stage by stage, with what the cache saved."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("study", metavar="STUDY", help="the study's name (see `memotune studies`)")
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"where studies live ({DEFAULT_STORAGE})"
    )
    parser.add_argument("--top", type=int, default=10, help="how many best trials (default 10)")
    parser.add_argument(
        "--trial",
        type=int,
        metavar="N",
        help="show trial N whole (with its traceback if it failed)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    study = load_study(args.storage, args.study)
    if args.trial is not None:
        _show_trial(study, args.trial, as_json=args.json)
        return
    best = report.best_trials(study.records, study.maximize, args.top)
    budget = study.budget.summary()
    cost_headers, cost_rows = report.cost_table(study.records, budget)
    if args.json:
        print(json.dumps(_as_json(study, best, budget, cost_headers, cost_rows), indent=2))
        return
    settings = study.settings
    print(
        f"study '{study.name}' ({study.path}): pipeline {settings.get('pipeline')}, tuner "
        f"{settings.get('tuner')}, seed {settings.get('seed')}, "
        f"{settings.get('direction')} {settings.get('objective')}"
    )
    running = f", {len(study.running)} running" if study.running else ""
    pruned = f", {study.pruned} pruned" if study.pruned else ""
    print(f"trials: {len(study.records)} finished ({study.failed} failed{pruned}){running}")
    print(_budget_line(budget))
    if best:
        print(f"\nbest {len(best)} trials")
        print(_best_table(best, settings.get("objective", "objective")))
    else:
        print("\nno completed trials yet")
    failed = [r for r in study.records if r.failed]
    if failed:
        print(f"\nfailed trials (memotune show {study.name} --trial N for the traceback)")
        print(table(["trial", "stage", "error"], [_failure_row(r) for r in failed]))
    print("\nbudget by stage (in the pipeline's cost unit: seconds unless its stages report one)")
    print(table(cost_headers, cost_rows))


def _show_trial(study: StoredStudy, trial_id: int, *, as_json: bool) -> None:
    record = next((r for r in study.records if r.trial_id == trial_id), None)
    if record is None:
        state = "is still running" if trial_id in study.running else "does not exist"
        raise ValueError(f"trial {trial_id} of study '{study.name}' {state}")
    if as_json:
        print(json.dumps(record.to_dict(), indent=2, default=str))
        return
    outcome = f"{record.status}, {record.objective}" if record.completed else record.error
    print(f"trial {trial_id} of study '{study.name}': {outcome}")
    print(f"configuration: {json.dumps(record.config, sort_keys=True)}")
    rows = [
        [
            s.stage,
            "hit" if s.hit else ("error" if s.error else "run"),
            s.cost,
            s.charged,
            s.node or "",
            ", ".join(f"{k}={v:.4g}" for k, v in s.metrics.items()),
        ]
        for s in record.stages
    ]
    print(table(["stage", "outcome", "true cost", "charged", "node", "metrics"], rows))
    if record.metrics:
        print("metrics: " + ", ".join(f"{k}={v}" for k, v in sorted(record.metrics.items())))
    if record.traceback:
        print("\n" + record.traceback.rstrip())


def _failure_row(record) -> list:
    return [record.trial_id, record.failed_stage or "", record.failure_reason]


def _best_table(best: list, objective: str) -> str:
    params = report.param_columns(best)
    headers = ["rank", "trial", objective, *params, "hits", "cost"]
    rows = []
    for rank, record in enumerate(best, 1):
        values = [record.config.get(p.split(".", 1)[0], {}).get(p.split(".", 1)[1]) for p in params]
        rows.append(
            [rank, record.trial_id, record.objective, *values, record.cache_hits, record.charged]
        )
    return table(headers, rows)


def _budget_line(budget: dict) -> str:
    if budget["kind"] == "trials":
        return f"budget: {budget['spent']:.0f} of {budget['total']:.0f} trials"
    share = 100 * budget["spent"] / budget["total"]
    tuner = f"tuner {budget['tuner']:.4g}"
    if not budget["tuner"] and budget["tuner_seconds"]:
        tuner = f"tuner {budget['tuner_seconds']:.4g}s (not charged)"
    return (
        f"budget: {budget['spent']:.4g} of {budget['total']:.4g} spent ({share:.0f}%): compute "
        f"{budget['compute']:.4g}, cache loads {budget['cache_loads']:.4g}, {tuner}; "
        f"the cache saved {budget['saved_by_cache']:.4g}"
    )


def _as_json(study: StoredStudy, best, budget, cost_headers, cost_rows) -> dict:
    return {
        "study": study.name,
        "path": str(study.path),
        "settings": {k: v for k, v in study.settings.items() if k != "space"},
        "trials": len(study.records),
        "failed": study.failed,
        "pruned": study.pruned,
        "failures": [
            dict(zip(["trial", "stage", "error"], _failure_row(r), strict=True))
            for r in study.records
            if r.failed
        ],
        "running": study.running,
        "best": [
            {
                "trial": r.trial_id,
                "objective": r.objective,
                "config": r.config,
                "cache_hits": r.cache_hits,
                "cost": r.charged,
            }
            for r in best
        ],
        "budget": budget,
        "stages": [dict(zip(cost_headers, row, strict=True)) for row in cost_rows],
    }
