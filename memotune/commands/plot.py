"""``memotune plot STUDY``: a study's plots as files, for users who do not run MLflow."""

from __future__ import annotations

import argparse
from pathlib import Path

from memotune import plots, report
from memotune.catalog import load_study
from memotune.tuner.journal import DEFAULT_STORAGE

EXAMPLES = """examples:
  memotune plot digits                    # into ./plots/digits/
  memotune plot digits --out /tmp/digits-plots
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="write a study's plots (PNG, and one interactive HTML page)",
        description=(
            "Write the plots MLflow shows on a study's parent run: convergence, cost by "
            "stage, parallel coordinates, parameter importance, objective by trial and cost "
            f"by stage per trial, as PNG files and one interactive page ({plots.HTML_PAGE})."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("study", metavar="STUDY", help="the study's name (see `memotune studies`)")
    parser.add_argument("--out", help="folder to write into (default: plots/STUDY)")
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"where studies live ({DEFAULT_STORAGE})"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    study = load_study(args.storage, args.study)
    if not study.records:
        raise ValueError(f"study '{study.name}' has no finished trials to plot yet")
    settings = study.settings
    spent = report.replay_budget(study.records, study.budget)
    files = plots.study_plots(
        study.records,
        report.convergence(study.records, spent, study.maximize),
        name=study.name,
        objective=str(settings.get("objective", "objective")),
        direction=str(settings.get("direction", "")),
        unit=str(settings.get("cost_unit", "seconds")),
        budget_unit="trials" if study.budget.kind == "trials" else settings.get("cost_unit", ""),
    )
    out = Path(args.out or Path("plots") / study.name)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    print(f"{len(files)} plots of study '{study.name}' in {out}/ — open {out / plots.HTML_PAGE}")
