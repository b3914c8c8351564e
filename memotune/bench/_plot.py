"""Anytime curves: the incumbent's test score against budget spent, one line per tuner.

Each run's curve (``RunResult.curve``) is read at the same budget points; a
line starts once every seed's run has an incumbent and is their mean, the
band ± one standard error. The points run to the largest budget any run
charged, so the trial that crossed the budget line is in the curve as it is
in the table: a line's last point is the table's mean test score. A dashed
line marks the budget. The y axis spans the lines after the first tenth of
the budget, where the tuners differ.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

POINTS = 200

#: Where a curve point keeps each score.
_COLUMN = {"best": 1, "test": 2}


def score_at(curve: list[list[float | None]], spent: float, score: str = "test") -> float | None:
    """The run's incumbent score once ``spent`` of the budget was charged (None before any
    incumbent); past the run's last trial, its final score."""
    column, value = _COLUMN[score], None
    for point in curve:
        if point[0] > spent:
            break
        value = point[column]
    return value


def mean_curve(
    runs: list[dict[str, Any]], grid: list[float], score: str = "test"
) -> tuple[list[float], list[float], list[float]]:
    """(budget points, mean score, standard error) where every run has a score."""
    xs, means, sems = [], [], []
    for spent in grid:
        values = [v for run in runs if (v := score_at(run["curve"], spent, score)) is not None]
        if not values or len(values) < len(runs):
            continue
        xs.append(spent)
        means.append(statistics.mean(values))
        sems.append(statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)
    return xs, means, sems


def budget_grid(summary: dict[str, Any], points: int = POINTS) -> list[float]:
    """Budget points from 0 to the most any run charged (at least the budget), the last
    one exactly there."""
    ends = [run["curve"][-1][0] for run in summary["runs"] if run["curve"]]
    end = max([*ends, summary["budget"] or 0.0]) or 1.0
    return [end * i / points for i in range(1, points)] + [end]


def anytime_curves(
    summary: dict[str, Any], points: int = POINTS
) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Per tuner, the mean test-score curve the plot draws."""
    grid = budget_grid(summary, points)
    runs = summary["runs"]
    return {t: mean_curve([r for r in runs if r["tuner"] == t], grid) for t in summary["tuners"]}


def plot_summary(summary: dict[str, Any], path: str | Path) -> Path:
    """Draw the summary's anytime curves to ``path`` (png, svg or pdf by its suffix)."""
    from matplotlib.figure import Figure

    curves = anytime_curves(summary)
    end = budget_grid(summary)[-1]
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    shown: list[float] = []  # after the first tenth of the budget, where tuners differ
    for tuner, (xs, means, sems) in curves.items():
        shown += [m for x, m in zip(xs, means, strict=True) if x >= end / 10]
        bold = tuner == summary.get("reference")
        (line,) = axes.plot(xs, means, label=tuner, linewidth=2 if bold else 1.2)
        low = [m - s for m, s in zip(means, sems, strict=True)]
        high = [m + s for m, s in zip(means, sems, strict=True)]
        axes.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)
    if summary["budget"]:
        axes.axvline(summary["budget"], color="gray", linestyle="--", linewidth=0.8)
    if shown and max(shown) > min(shown):
        pad = (max(shown) - min(shown)) * 0.1
        axes.set_ylim(min(shown) - pad, max(shown) + pad)
    unit = "seconds" if summary.get("cost_unit") == "seconds" else "cost units"
    axes.set_xlabel(f"budget spent ({unit})")
    metric = summary.get("test_metric")
    if metric:
        score = metric if metric.startswith("test_") else f"test {metric}"
    else:
        score = summary.get("objective", "objective")
    axes.set_ylabel(f"incumbent's {score} ({summary['direction']})")
    axes.set_title(
        f"{summary['pipeline']}: incumbent's {score}\nmean ± s.e. over {summary['seeds']} seeds",
        fontsize="medium",
    )
    axes.grid(alpha=0.3)
    axes.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
