"""The study's figures as PNG bytes: the convergence curve and the cost breakdown.

Uses matplotlib's object API (no pyplot), so it is safe off the main thread
and needs no display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from memotune.report import Point, StageCost


def convergence_png(
    points: Sequence[Point], *, objective: str, direction: str, unit: str, title: str
) -> bytes:
    """Best objective so far (a step line) against the budget spent; every finished trial
    as a dot, hollow when it reused cached stages, a cross when it failed."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    curve = [(p.spent, p.best) for p in points if p.best is not None]
    if curve:
        xs, ys = zip(*curve, strict=True)
        axes.step(xs, ys, where="post", color="tab:blue", linewidth=2, label=f"best {objective}")
    fresh = [(p.spent, p.objective) for p in points if p.completed and not p.cache_hits]
    reused = [(p.spent, p.objective) for p in points if p.completed and p.cache_hits]
    for series, style, label in (
        (fresh, {"color": "tab:gray"}, "trial, no cache hit"),
        (reused, {"facecolors": "none", "edgecolors": "tab:green"}, "trial reusing cached stages"),
    ):
        if series:
            xs, ys = zip(*series, strict=True)
            axes.scatter(xs, ys, s=18, label=label, **style)
    failed = [p.spent for p in points if not p.completed]
    if failed and curve:
        low = min(p.objective for p in points if p.completed and p.objective is not None)
        axes.scatter(failed, [low] * len(failed), marker="x", color="tab:red", label="failed")
    axes.set_xlabel(f"budget spent ({unit})")
    axes.set_ylabel(f"{objective} ({direction})")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if curve or failed:
        axes.legend(loc="best", fontsize="small")
    return _png(figure)


def cost_breakdown_png(costs: Sequence[StageCost], *, unit: str, title: str) -> bytes:
    """One bar per stage: compute and cache loads charged, and the cost the cache spared."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 1.6 + 0.5 * max(1, len(costs))), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    names = [f"{c.stage} ({c.runs} runs, {c.hits} hits)" for c in costs][::-1]
    compute = [c.compute for c in costs][::-1]
    loads = [c.loads for c in costs][::-1]
    saved = [c.saved for c in costs][::-1]
    axes.barh(names, compute, color="tab:blue", label="compute")
    axes.barh(names, loads, left=compute, color="tab:orange", label="cache loads")
    axes.barh(
        names,
        saved,
        left=[a + b for a, b in zip(compute, loads, strict=True)],
        color="none",
        edgecolor="tab:green",
        hatch="//",
        label="saved by the cache",
    )
    axes.set_xlabel(unit)
    axes.set_title(title)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize="small")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
