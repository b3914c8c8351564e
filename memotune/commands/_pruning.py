"""The early-stopping options ``tune`` and ``bench`` share (ASHA on a stepped metric)."""

from __future__ import annotations

import argparse

from memotune.tuner.pruning import ASHA


def add_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group(
        "early stopping", "ASHA on a metric that a stage with a fidelity reports as it trains"
    )
    group.add_argument(
        "--prune",
        metavar="METRIC[:max]",
        help=f"stop {what} whose METRIC falls behind at a rung (minimized; METRIC:max maximizes)",
    )
    group.add_argument(
        "--prune-min-step",
        type=int,
        help="the first rung's step (default: the lower bound of the fidelity)",
    )
    group.add_argument(
        "--prune-reduction",
        type=int,
        default=3,
        help="rungs every this many times more steps; the best 1/this goes on (default 3)",
    )
    group.add_argument(
        "--prune-min-evidence",
        type=int,
        default=8,
        help="a rung stops trials once this many finished trials reported there and its "
        "metric ranked them as their objective did; 0 stops from the start (default 8)",
    )
    group.add_argument(
        "--prune-min-recall",
        type=float,
        default=0.9,
        help="a rung that ranks roughly keeps more than the best 1/reduction: enough to "
        "have kept this share of the finished trials that ended among the best "
        "1/reduction (default 0.9)",
    )


def pruner(args: argparse.Namespace) -> ASHA | None:
    """The ASHA pruner the options ask for, or ``None`` without ``--prune``."""
    if not args.prune:
        return None
    metric, _, mode = args.prune.partition(":")
    return ASHA(
        metric,
        mode=mode or "min",
        min_step=args.prune_min_step,
        reduction=args.prune_reduction,
        min_evidence=args.prune_min_evidence,
        min_recall=args.prune_min_recall,
    )
