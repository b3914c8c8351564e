"""``memotune bench``: every tuner on the same pipeline, seeds and budget."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from memotune.formatting import table
from memotune.loading import load_pipeline
from memotune.tuner.registry import tuner_class

EXAMPLES = """examples:
  memotune bench --pipeline synthetic-3 --tuners eeipu,ei,eips,carbo,ms-carbo,random \\
      --seeds 10 --budget 400 --json out/synthetic-3.json
  memotune bench --pipeline synthetic-10 --tuners eeipu,ei --seeds 5 --budget 1500
  memotune bench --pipeline examples/vision.py --tuners eeipu,ei,carbo,ms-carbo,random,tpe \\
      --seeds 3 --budget 120 --json docs/bench/vision.json --plot docs/bench/vision.png
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="compare tuners on one pipeline",
        description=(
            "Run each tuner on the same pipeline, seeds and budget (each run in its own "
            "process, folder and cache) and print one table."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pipeline", required=True, help="synthetic-3, synthetic-10 or FILE.py[:NAME]"
    )
    parser.add_argument(
        "--tuners", default="eeipu,ei,eips,carbo,ms-carbo,random", help="comma-separated"
    )
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--budget", type=float, help="cost budget per run")
    amount.add_argument("--trials", type=int, help="trial count per run")
    parser.add_argument("--processes", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="trials in flight within each run: proposals are made with the others pending "
        "(default 1)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the table to this file")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="also draw best objective against budget spent (png, svg or pdf)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    # torch and matplotlib: only when benchmarking
    from memotune.tuner.bench import RunFailure, RunResult, compare, summarize
    from memotune.tuner.bench_plot import plot_summary

    tuners = [t.strip() for t in args.tuners.split(",") if t.strip()]
    for name in tuners:
        tuner_class(name)  # unknown or unavailable tuners fail before anything runs
    pipeline = load_pipeline(args.pipeline)
    factory = functools.partial(load_pipeline, args.pipeline)
    total = len(tuners) * args.seeds

    def progress(outcome: RunResult | RunFailure) -> None:
        progress.done += 1
        head = f"[{progress.done}/{total}] {outcome.tuner} seed {outcome.seed}"
        if isinstance(outcome, RunFailure):
            line = f"{head}: FAILED: {outcome.error}"
        else:
            best = "–" if outcome.best is None else f"{outcome.best:.6g}"
            line = (
                f"{head}: {outcome.trials} trials, best {best}, "
                f"{outcome.seconds_per_proposal:.3f}s/proposal"
            )
        print(line, file=sys.stderr, flush=True)

    progress.done = 0
    results, failures = compare(
        factory,
        tuners,
        range(args.seeds),
        budget=args.budget,
        trials=args.trials,
        processes=args.processes,
        on_result=progress,
        workers=args.workers,
    )
    if not results:
        raise SystemExit(f"memotune bench: every run failed; first: {failures[0].error}")
    summary = summarize(
        results,
        pipeline=args.pipeline,
        budget=args.budget,
        trials=args.trials,
        direction=pipeline.direction,
        cost_unit=pipeline.cost_unit,
        workers=args.workers,
        failures=failures,
    )
    print(format_table(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot_summary(summary, args.plot)}")
    if failures:
        raise SystemExit(f"memotune bench: {len(failures)} of {total} runs failed (listed above)")


def format_table(summary: dict) -> str:
    rows = []
    for tuner, row in summary["tuners"].items():
        best = (
            "–" if row["best_mean"] is None else f"{row['best_mean']:.4f} ± {row['best_sem']:.4f}"
        )
        rows.append(
            [
                tuner,
                f"{row['trials_mean']:.1f} ± {row['trials_sem']:.1f}",
                best,
                f"{100 * row['cache_hit_share']:.1f}%",
                f"{100 * row['tuner_share']:.1f}%",
                round(row["tuner_seconds_total"], 1),
                round(row["tuner_seconds_per_proposal"], 3),
            ]
        )
    amount = f"budget {summary['budget']}" if summary["budget"] else f"{summary['trials']} trials"
    workers = f", {summary['workers']} workers" if summary.get("workers", 1) > 1 else ""
    heading = (
        f"{summary['pipeline']}, {amount}{workers}, {summary['seeds']} seeds "
        f"(best: {summary['direction']}, mean ± standard error)"
    )
    headers = [
        "tuner",
        "trials",
        "best",
        "budget in hits",
        "budget in tuner",
        "tuner s",
        "s/proposal",
    ]
    return heading + "\n" + table(headers, rows)
