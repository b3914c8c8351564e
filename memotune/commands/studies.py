"""``memotune studies``: the studies in a storage folder."""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from memotune.catalog import UnreadableStudy, load_study, study_names
from memotune.formatting import table
from memotune.tuner.journal import DEFAULT_STORAGE

EXAMPLES = """examples:
  memotune studies
  memotune studies --storage /shared/memotune-studies
  memotune studies --json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "studies",
        help="list the studies in the storage folder",
        description=(
            "List the studies in the storage folder, most recently active first: pipeline, "
            "tuner, trials, best objective and budget spent. `memotune show STUDY` has details."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"where studies live ({DEFAULT_STORAGE})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    studies = []
    for name in study_names(args.storage):
        try:
            studies.append(load_study(args.storage, name))
        except UnreadableStudy as error:
            print(f"memotune: skipped: {error}", file=sys.stderr)
    studies.sort(key=lambda s: s.updated, reverse=True)
    rows = [_row(s) for s in studies]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"no studies in {args.storage} (start one with `memotune tune FILE.py ...`)")
        return
    print(
        table(
            ["study", "pipeline", "tuner", "trials", "failed", "best", "budget", "last trial"],
            [
                [
                    r["study"],
                    r["pipeline"],
                    r["tuner"],
                    r["trials"] if not r["running"] else f"{r['trials']} (+{r['running']} running)",
                    r["failed"],
                    "–" if r["best"] is None else f"{r['objective']} {r['best']:.6g}",
                    _budget(r),
                    datetime.datetime.fromtimestamp(r["updated"]).strftime("%Y-%m-%d %H:%M"),
                ]
                for r in rows
            ],
        )
    )


def _row(study) -> dict:
    best = study.best
    budget = study.budget
    return {
        "study": study.name,
        "pipeline": study.settings.get("pipeline"),
        "tuner": study.settings.get("tuner"),
        "objective": study.settings.get("objective"),
        "direction": study.settings.get("direction"),
        "trials": len(study.records),
        "failed": study.failed,
        "running": len(study.running),
        "best": best.objective if best else None,
        "best_trial": best.trial_id if best else None,
        "budget_kind": budget.kind,
        "budget_spent": budget.spent,
        "budget_total": budget.total,
        "updated": study.updated,
        "path": str(study.path),
    }


def _budget(row: dict) -> str:
    if row["budget_kind"] == "trials":
        return f"{row['budget_spent']:.0f}/{row['budget_total']:.0f} trials"
    return f"{row['budget_spent']:.1f}/{row['budget_total']:.1f}"
