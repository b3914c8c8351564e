"""``memotune bench``: every tuner on the same pipeline, seeds and budget."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

from memotune.commands import _pruning
from memotune.loading import load_pipeline
from memotune.tuner.pruning import PRUNED_SUFFIX
from memotune.tuner.registry import tuner_class

EXAMPLES = """examples:
  memotune bench --pipeline synthetic-3 --tuners memo,eeipu,ei,eips,carbo,ms-carbo,random \\
      --seeds 10 --budget 400 --json out/synthetic-3.json
  memotune bench --pipeline synthetic-10 --tuners memo,eeipu,ei --seeds 5 --budget 1500
  memotune bench --pipeline examples/vision.py --tuners memo,eeipu,ei,carbo,ms-carbo,random,tpe \\
      --seeds 5 --budget 120 --json docs/bench/vision.json --plot docs/bench/vision.png
  memotune bench --pipeline synthetic-3 --tuners ei,eeipu,my_tuners.py:Greedy --reference eeipu \\
      --seeds 10 --budget 400
  memotune bench --table docs/bench/regression.json --markdown   # a saved table, for docs
  memotune bench --table docs/bench/regression.json --plot regression.png   # ... and its plot
  memotune bench --table peers.json memo-rerun.json --json merged.json   # one table from two
  memotune bench --pipeline examples/language.py --tuners memo,eeipu --seeds 5 --first-seed 5 \
      --budget 120 --json more-seeds.json   # seeds 5..9, to join with --table
  memotune bench --pipeline examples/fidelity.py --tuners memo,memo+asha,tpe+asha,raytune+asha \
      --prune valid_loss --seeds 5 --budget 60   # with and without early stopping; Ray Tune's ASHA
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="compare tuners on one pipeline",
        description=(
            "Run each tuner on the same pipeline, seeds and budget (each run in its own "
            "process, folder and cache) and print one table: per tuner, the test score of "
            "the incumbent a user would pick (best by the tuning objective; the pipeline's "
            "test_metric, or the objective where it has none), mean ± standard error over "
            "seeds; the EEIPU paper's gain since warm-up relative to the other tuners; "
            "wins/ties/losses and a Wilcoxon signed-rank p-value against --reference, seed "
            "by seed; and the tuner's share of the charged budget."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pipeline", help="synthetic-3, synthetic-10 or FILE.py[:NAME]")
    parser.add_argument(
        "--table",
        metavar="JSON",
        nargs="+",
        help="print the table of a saved --json file (and with --plot, draw it) instead of "
        "running anything; several files of the same benchmark make one table (a tuner's run "
        "on a seed found in several comes from the last), which --json saves",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown (for docs)"
    )
    parser.add_argument(
        "--tuners",
        default="memo,eeipu,ei,eips,carbo,ms-carbo,random",
        help="comma-separated: registered names or Tuner classes as package.module:Class or "
        "path/to/file.py:Class; NAME+asha runs NAME with --prune's early stopping, and "
        "raytune+asha is Ray Tune's ASHA scheduler with Optuna's TPE as its searcher, on "
        "the same budget (no stage cache)",
    )
    parser.add_argument(
        "--reference",
        help="the tuner every other is compared with, seed by seed (default: the first listed)",
    )
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds FIRST..FIRST+N-1 (default 0): more seeds for a saved table, to join with "
        "--table",
    )
    amount = parser.add_mutually_exclusive_group()
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
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write the table, every run, and the commit, machine and command to this file",
    )
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="also draw the incumbent's test score against budget spent (png, svg or pdf)",
    )
    _pruning.add_arguments(parser, "the trials of the tuners listed as NAME+asha")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    # torch, scipy, rich and matplotlib: only when benchmarking
    from memotune.bench import (
        RAY_TUNE,
        RunFailure,
        RunResult,
        compare,
        merge_tables,
        provenance,
        summarize,
    )

    if args.table:
        tables = [json.loads(Path(path).read_text()) for path in args.table]
        saved = merge_tables(tables, args.reference)  # recomputed: today's columns, --reference
        _report(saved, args)
        return
    if not args.pipeline or (args.budget is None and args.trials is None):
        raise ValueError("memotune bench needs --pipeline and --budget or --trials (or --table)")
    started = time.time()
    tuners = [t.strip() for t in args.tuners.split(",") if t.strip()]
    pruner = _pruning.pruner(args)
    for name in tuners:
        if name.endswith(PRUNED_SUFFIX) and pruner is None:
            raise ValueError(f"{name} runs with early stopping: give --prune METRIC")
        if name != RAY_TUNE:
            tuner_class(name.removesuffix(PRUNED_SUFFIX))  # unknown or unavailable ones fail now
    reference = args.reference or (tuners[0] if tuners else None)
    if reference not in tuners:
        raise ValueError(f"--reference {reference!r} is not one of --tuners ({args.tuners})")
    pipeline = load_pipeline(args.pipeline)
    factory = functools.partial(load_pipeline, args.pipeline)
    total = len(tuners) * args.seeds

    results: list[RunResult] = []
    failures: list[RunFailure] = []

    def table() -> dict:
        order = {name: i for i, name in enumerate(tuners)}
        record = provenance(getattr(args, "argv", sys.argv[1:]), started, time.time())
        record.update(finished_runs=len(results) + len(failures), planned_runs=total)
        return summarize(
            sorted(results, key=lambda r: (order.get(r.tuner, len(order)), r.seed)),
            pipeline=args.pipeline,
            budget=args.budget,
            trials=args.trials,
            direction=pipeline.direction,
            cost_unit=pipeline.cost_unit,
            workers=args.workers,
            failures=failures,
            objective=pipeline.objective,
            test_metric=pipeline.test_metric,
            reference=reference,
            provenance=record,
        )

    def finished(outcome: RunResult | RunFailure) -> None:
        """Rewrite --json with every finished run (a crash or a kill loses none), then
        print the run's line."""
        head = f"[{len(results) + len(failures) + 1}/{total}] {outcome.tuner} seed {outcome.seed}"
        if isinstance(outcome, RunFailure):
            failures.append(outcome)
            line = f"{head}: FAILED: {outcome.error}"
        else:
            results.append(outcome)
            best = "–" if outcome.best is None else f"{outcome.best:.6g}"
            test = "–" if outcome.test is None else f"{outcome.test:.6g}"
            line = (
                f"{head}: {outcome.trials} trials, best {best}, test {test}, "
                f"{outcome.seconds_per_proposal:.3f}s/proposal"
            )
        if args.json and results:
            _write_json(table(), args.json)
        print(line, file=sys.stderr, flush=True)

    try:
        compare(
            factory,
            tuners,
            range(args.first_seed, args.first_seed + args.seeds),
            budget=args.budget,
            trials=args.trials,
            processes=args.processes,
            on_result=finished,
            workers=args.workers,
            pruner=pruner,
        )
    except KeyboardInterrupt:
        kept = f"; they are in {args.json}" if args.json and results else ""
        print(
            f"memotune bench: stopped after {len(results) + len(failures)} of {total} runs{kept}"
            " (run the missing seeds with --first-seed and join the tables with --table)",
            file=sys.stderr,
        )
        raise
    if not results:
        raise SystemExit(f"memotune bench: every run failed; first: {failures[0].error}")
    _report(table(), args)
    if failures:
        raise SystemExit(f"memotune bench: {len(failures)} of {total} runs failed (listed above)")


def _report(summary: dict, args: argparse.Namespace) -> None:
    """Print the table; write it (``--json``) and draw it (``--plot``) where asked."""
    from memotune.bench import format_table, plot_summary

    print(format_table(summary, markdown=args.markdown))
    if args.json:
        _write_json(summary, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot_summary(summary, args.plot)}")


def _write_json(summary: dict, path: str) -> None:
    """Replace ``path`` with the table in one step (a reader never sees half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    partial.replace(target)
