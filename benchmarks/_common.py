"""Helpers every benchmark script shares: the ``--json PATH`` flag and output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    return p


def report(figures: dict[str, Any], json_path: str | None) -> None:
    """Print the figures and, when asked, write them as JSON."""
    for name, value in figures.items():
        print(f"{name:>32}: {value:.6g}" if isinstance(value, float) else f"{name:>32}: {value}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {json_path}")


def study_parser(description: str) -> argparse.ArgumentParser:
    """:func:`parser` with what :func:`run_study` needs: the pipeline, tuner, seed, budget."""
    p = parser(description)
    p.add_argument("pipeline", help="FILE.py[:NAME], synthetic-3 or synthetic-10")
    p.add_argument("--tuner", default="memo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=120.0)
    return p


def run_study(args: argparse.Namespace, pruner: Any = None) -> tuple[Any, Any, list]:
    """One study of ``args.tuner`` on ``args.pipeline`` in this process, on one core as each
    of ``memotune bench``'s runs has, with its own cache in a temporary folder; returns
    the pipeline, the spent budget and the trials."""
    import tempfile

    import torch

    from memotune.cache import StageCache
    from memotune.loading import load_pipeline
    from memotune.tuner.budget import Budget
    from memotune.tuner.study import Study

    torch.set_num_threads(1)
    pipeline = load_pipeline(args.pipeline)
    budget = Budget.for_pipeline(pipeline, budget=args.budget)
    with tempfile.TemporaryDirectory() as folder:
        study = Study(
            pipeline,
            name="benchmark",
            budget=budget,
            tuner=args.tuner,
            seed=args.seed,
            storage=folder,
            cache=StageCache(Path(folder) / "cache"),
            pruner=pruner,
        )
        return pipeline, budget, study.run().trials
