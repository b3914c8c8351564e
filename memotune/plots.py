"""The study's figures: PNGs (matplotlib) and one interactive HTML page (plotly).

:func:`study_plots` makes every file, for the MLflow parent run and for
``memotune plot``: the convergence curve, the cost breakdown, and, as PNG and
in ``plots.html``, parallel coordinates of the settings, parameter importance,
the objective by trial and each stage's cost per trial. matplotlib is used
through its object API (no pyplot), so it is safe off the main thread and
needs no display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from memotune.pipelines import TrialRecord
from memotune.report import (
    Point,
    StageCost,
    completed_params,
    numeric_column,
    parameter_importance,
    stage_costs,
)

#: The interactive page's name among a study's plot files.
HTML_PAGE = "plots.html"


def study_plots(
    records: Sequence[TrialRecord],
    points: Sequence[Point],
    *,
    name: str,
    objective: str,
    direction: str,
    unit: str,
    budget_unit: str,
) -> dict[str, bytes]:
    """Every plot of a study, file name to bytes. ``unit`` is the stages' cost unit,
    ``budget_unit`` the budget's (the same, or "trials")."""
    importance = parameter_importance(records)
    return {
        "convergence.png": convergence_png(
            points,
            objective=objective,
            direction=direction,
            unit=budget_unit,
            title=f"study '{name}': best {objective} against budget spent",
        ),
        "cost_breakdown.png": cost_breakdown_png(
            stage_costs(records), unit=unit, title=f"study '{name}': cost by stage"
        ),
        "parallel_coordinates.png": parallel_png(records, objective),
        "parameter_importance.png": importance_png(importance, objective),
        "objective_by_trial.png": objective_by_trial_png(points, objective, direction),
        "stage_cost_by_trial.png": stage_cost_by_trial_png(records, unit),
        HTML_PAGE: html_page(
            records,
            points,
            importance,
            name=name,
            objective=objective,
            direction=direction,
            unit=unit,
        ),
    }


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


def parallel_png(records: Sequence[TrialRecord], objective: str) -> bytes:
    """One line per completed trial across its settings (each axis scaled to its range),
    coloured by the objective."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    columns, done = completed_params(records)
    figure = Figure(figsize=(max(6, 1.4 * (len(columns) + 1)), 4.2), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    if done and columns:
        table = _scaled(done, columns)
        values = [r.objective for r in done]
        low, high = min(values), max(values)
        colours = colormaps["viridis"]
        for row, value in zip(table, values, strict=True):
            shade = 0.5 if high == low else (value - low) / (high - low)
            axes.plot(range(len(columns)), row, color=colours(shade), alpha=0.6, linewidth=1)
        axes.set_xticks(range(len(columns)), columns, rotation=20, ha="right", fontsize="small")
    axes.set_yticks([0, 1], ["low", "high"])
    axes.set_title(f"settings of the completed trials (colour: {objective}, yellow high)")
    return _png(figure)


def importance_png(importance: dict[str, float], objective: str) -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 1.6 + 0.35 * max(1, len(importance))), dpi=110)
    figure.set_layout_engine("constrained")
    axes = figure.add_subplot()
    names = list(importance)[::-1]
    axes.barh(names, [importance[n] for n in names], color="tab:blue")
    axes.set_xlabel(f"share of the variation in {objective} explained (random forest)")
    axes.set_title("parameter importance" + ("" if importance else " (needs 4 completed trials)"))
    return _png(figure)


def objective_by_trial_png(points: Sequence[Point], objective: str, direction: str) -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    done = [(p.trial_id, p.objective) for p in points if p.completed and p.objective is not None]
    if done:
        axes.scatter(*zip(*done, strict=True), s=14, color="tab:gray", label=objective)
    best = [(p.trial_id, p.best) for p in points if p.best is not None]
    if best:
        axes.step(*zip(*best, strict=True), where="post", color="tab:blue", label="best so far")
        axes.legend(loc="best", fontsize="small")
    axes.set_xlabel("trial")
    axes.set_ylabel(f"{objective} ({direction})")
    axes.set_title(f"{objective} by trial")
    axes.grid(alpha=0.3)
    return _png(figure)


def stage_cost_by_trial_png(records: Sequence[TrialRecord], unit: str) -> bytes:
    """Stacked bars: what each stage charged each trial (a hit charges its load)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    ids, by_stage = _stage_charges(records)
    bottom = [0.0] * len(ids)
    for stage, charged in by_stage.items():
        axes.bar(ids, charged, bottom=bottom, label=stage, width=0.9)
        bottom = [b + c for b, c in zip(bottom, charged, strict=True)]
    axes.set_xlabel("trial")
    axes.set_ylabel(f"charged ({unit})")
    axes.set_title("cost of each trial by stage (cache hits charge their load only)")
    if by_stage:
        axes.legend(loc="best", fontsize="small")
    return _png(figure)


def html_page(
    records: Sequence[TrialRecord],
    points: Sequence[Point],
    importance: dict[str, float],
    *,
    name: str,
    objective: str,
    direction: str,
    unit: str,
) -> bytes:
    """The four interactive figures on one self-contained page (plotly.js embedded once,
    so it opens without a network, in MLflow's artifact view too)."""
    import plotly.graph_objects as go

    columns, done = completed_params(records)
    figures = []
    if done and columns:
        dimensions = [_dimension(done, c) for c in columns]
        values = [r.objective for r in done]
        dimensions.append({"label": objective, "values": values})
        figures.append(
            go.Figure(
                go.Parcoords(
                    line={"color": values, "colorscale": "Viridis", "showscale": True},
                    dimensions=dimensions,
                ),
                layout={"title": "parallel coordinates (drag along an axis to filter)"},
            )
        )
    figures.append(
        go.Figure(
            go.Bar(x=list(importance.values())[::-1], y=list(importance)[::-1], orientation="h"),
            layout={"title": f"parameter importance for {objective} (random forest)"},
        )
    )
    trials = go.Figure(layout={"title": f"{objective} by trial ({direction})"})
    finished = [p for p in points if p.completed and p.objective is not None]
    trials.add_scatter(
        x=[p.trial_id for p in finished],
        y=[p.objective for p in finished],
        mode="markers",
        name=objective,
        text=[f"cache hits {p.cache_hits}" for p in finished],
    )
    best = [p for p in points if p.best is not None]
    trials.add_scatter(
        x=[p.trial_id for p in best],
        y=[p.best for p in best],
        mode="lines",
        line_shape="hv",
        name="best so far",
    )
    figures.append(trials)
    ids, by_stage = _stage_charges(records)
    costs = go.Figure(layout={"title": f"cost of each trial by stage ({unit})", "barmode": "stack"})
    for stage, charged in by_stage.items():
        costs.add_bar(x=ids, y=charged, name=stage)
    figures.append(costs)
    parts = [
        figure.to_html(full_html=False, include_plotlyjs=index == 0)
        for index, figure in enumerate(figures)
    ]
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>study {name}</title></head>"
        f"<body><h2>study '{name}'</h2>{''.join(parts)}</body></html>"
    )
    return page.encode()


def _stage_charges(records: Sequence[TrialRecord]) -> tuple[list[int], dict[str, list[float]]]:
    ids = [r.trial_id if r.trial_id is not None else i for i, r in enumerate(records)]
    stages = list(dict.fromkeys(s.stage for r in records for s in r.stages))
    by_stage = {
        stage: [sum(s.charged for s in r.stages if s.stage == stage) for r in records]
        for stage in stages
    }
    return ids, by_stage


def _dimension(records: Sequence[TrialRecord], column: str) -> dict[str, Any]:
    values, labels = numeric_column(records, column)
    if labels is None:
        return {"label": column, "values": values}
    return {
        "label": column,
        "values": values,
        "tickvals": list(range(len(labels))),
        "ticktext": labels,
    }


def _scaled(records: Sequence[TrialRecord], columns: list[str]) -> list[list[float]]:
    """Each setting scaled to [0, 1] over the trials (choices: by their order of values)."""
    scaled = []
    for column in columns:
        values = numeric_column(records, column)[0]
        low, high = min(values), max(values)
        scaled.append([0.5 if high == low else (v - low) / (high - low) for v in values])
    return [list(row) for row in zip(*scaled, strict=True)]
