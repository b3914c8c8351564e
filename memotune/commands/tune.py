"""``memotune tune FILE.py[:NAME]``: run (or resume) a tuning study."""

from __future__ import annotations

import argparse
import json

from memotune.api import tune
from memotune.cache import DEFAULT_ROOT
from memotune.commands import _pruning
from memotune.loading import load_pipeline
from memotune.runners import CONNECT_TIMEOUT_SECONDS, RUNNERS
from memotune.tuner.journal import DEFAULT_STORAGE
from memotune.tuner.registry import DEFAULT_TUNER, TUNERS

EXAMPLES = """examples:
  memotune tune examples/digits.py --budget 60 --study digits --seed 0
  memotune tune examples/digits.py --tuner random --trials 20 --workers 2
  memotune tune examples/digits.py --tuner my_tuners.py:Greedy --trials 20  # your own tuner
  memotune tune examples/digits.py --budget 600 --address auto --workers 8   # join a cluster
  memotune tune examples/digits.py --trials 5 --runner local                 # debug in-process
  memotune tune examples/digits.py --study digits --budget 120     # resume, extended to 120 s
  memotune tune pipelines.py:small --trials 10 --cache /shared/memotune-cache
  memotune tune examples/digits.py --trials 20 --tracking-uri http://127.0.0.1:5000
  memotune tune examples/digits.py --trials 20 --no-tracking
  memotune tune examples/fidelity.py --budget 60 --prune valid_loss   # stop bad training early
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="tune a pipeline defined in a Python file",
        description=(
            "Tune the pipeline object defined in FILE.py (FILE.py:NAME picks one of several). "
            "The budget is in cost units (seconds of stage compute, cache loads and the "
            "tuner's own time) or a trial count. An existing --study is resumed."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pipeline", metavar="FILE.py[:NAME]", help="where the pipeline is defined")
    parser.add_argument(
        "--tuner",
        default=DEFAULT_TUNER,
        metavar="TUNER",
        help=f"{', '.join(sorted(TUNERS))} (default: {DEFAULT_TUNER}), or your own Tuner "
        "subclass as package.module:Class or path/to/file.py:Class",
    )
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--budget", type=float, help="total cost budget (seconds on real stages)")
    amount.add_argument("--trials", type=int, help="total number of trials")
    parser.add_argument(
        "--study", help="study name (default: a new one); an existing study resumes"
    )
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    parser.add_argument(
        "--workers", type=int, default=1, help="trials in flight at once (default 1)"
    )
    parser.add_argument(
        "--runner",
        choices=RUNNERS,
        default="ray",
        help="ray: every stage a Ray task (default); local: one trial at a time in this process",
    )
    parser.add_argument(
        "--address",
        help="join a running Ray cluster ('auto', 'ray://HOST:10001'); default: an embedded "
        "Ray for the length of the sweep",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="with --address: fail if nothing answers there within this long "
        f"(default {CONNECT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="times a stage whose worker or node died is retried elsewhere (default 3)",
    )
    parser.add_argument(
        "--cache",
        default=DEFAULT_ROOT,
        help=f"cache folder or object-storage URL, e.g. s3://bucket/prefix ({DEFAULT_ROOT})",
    )
    parser.add_argument("--no-cache", action="store_true", help="run every stage every time")
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"where studies live ({DEFAULT_STORAGE})"
    )
    parser.add_argument(
        "--max-failures", type=int, default=5, help="stop after this many failed trials in a row"
    )
    tracking = parser.add_mutually_exclusive_group()
    tracking.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow store or server (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    tracking.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    _pruning.add_arguments(parser, "trials")
    parser.add_argument("--json", action="store_true", help="print the result as JSON at the end")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    pipeline = load_pipeline(args.pipeline)
    result = tune(
        pipeline,
        tuner=args.tuner,
        budget=args.budget,
        trials=args.trials,
        seed=args.seed,
        study=args.study,
        workers=args.workers,
        cache=None if args.no_cache else args.cache,
        storage=args.storage,
        runner=args.runner,
        address=args.address,
        connect_timeout=args.connect_timeout,
        retries=args.retries,
        max_consecutive_failures=args.max_failures,
        tracking=not args.no_tracking,
        tracking_uri=args.tracking_uri,
        pruner=_pruning.pruner(args),
    )
    summary = {
        "study": result.study,
        "best_value": result.best_value,
        "best_config": result.best_config,
        "trials": len(result.trials),
        "failed": sum(trial.failed for trial in result.trials),
        "pruned": sum(trial.pruned for trial in result.trials),
        "budget": result.budget,
        "seconds_per_proposal": result.seconds_per_proposal,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"best {pipeline.objective} = {result.best_value} in study '{result.study}'")
    print(f"best configuration: {json.dumps(result.best_config, sort_keys=True)}")
    spent = result.budget
    print(
        f"budget: {spent['spent']:.1f} of {spent['total']:.1f} spent — compute "
        f"{spent['compute']:.1f}, cache loads {spent['cache_loads']:.1f}, tuner "
        f"{spent['tuner_seconds']:.1f}s; the cache spared {spent['saved_by_cache']:.1f}"
    )
