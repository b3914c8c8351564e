"""Best objective against budget spent, one line per tuner, from a bench summary.

Each run's best-so-far curve is read at the same budget points; the line
starts once every seed's run has a result and is their mean, the band ± one
standard error. The y axis spans the lines after the first tenth of the
budget, where the tuners differ.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

POINTS = 200


def best_at(curve: list[list[float | None]], spent: float) -> float | None:
    """The run's best objective once ``spent`` of its budget was used (None before any)."""
    best = None
    for used, value in curve:
        if used > spent:
            break
        best = value
    return best


def mean_curve(
    runs: list[dict[str, Any]], grid: list[float]
) -> tuple[list[float], list[float], list[float]]:
    """(budget points, mean best, standard error) where every run has a result."""
    xs, means, sems = [], [], []
    for spent in grid:
        values = [v for run in runs if (v := best_at(run["curve"], spent)) is not None]
        if len(values) < len(runs):
            continue
        xs.append(spent)
        means.append(statistics.mean(values))
        sems.append(statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)
    return xs, means, sems


def plot_summary(summary: dict[str, Any], path: str | Path) -> Path:
    """Draw the summary's curves to ``path`` (png, svg or pdf by its suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = summary["runs"]
    end = summary["budget"] or max((run["curve"][-1][0] for run in runs if run["curve"]), default=1)
    grid = [end * i / POINTS for i in range(1, POINTS + 1)]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    shown: list[float] = []  # after the first tenth of the budget, where tuners differ
    for tuner in summary["tuners"]:
        xs, means, sems = mean_curve([r for r in runs if r["tuner"] == tuner], grid)
        shown += [m for x, m in zip(xs, means, strict=True) if x >= end / 10]
        (line,) = axes.plot(xs, means, label=tuner, linewidth=2 if tuner == "eeipu" else 1.2)
        low = [m - s for m, s in zip(means, sems, strict=True)]
        high = [m + s for m, s in zip(means, sems, strict=True)]
        axes.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)
    if shown and max(shown) > min(shown):
        pad = (max(shown) - min(shown)) * 0.1
        axes.set_ylim(min(shown) - pad, max(shown) + pad)
    unit = "seconds" if summary["budget"] and summary.get("cost_unit") == "seconds" else "cost"
    axes.set_xlabel(f"budget spent ({unit})")
    axes.set_ylabel(f"best objective ({summary['direction']})")
    axes.set_title(f"{summary['pipeline']}: best so far, mean ± s.e. over {summary['seeds']} seeds")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
