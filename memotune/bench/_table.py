"""The comparison table as text (rich), with the command that made it above it."""

from __future__ import annotations

import io
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

#: Wide enough that rich never wraps a cell of the table.
WIDTH = 240


def format_table(summary: dict[str, Any], markdown: bool = False) -> str:
    """The summary's table: one row per tuner, under a heading that says what was run
    (as a Markdown table, the command in a code block, with ``markdown``)."""
    reference = summary.get("reference")
    metric = summary.get("test_metric")
    if metric is None:
        score = f"{summary.get('objective', 'objective')} (no split)"
    else:
        score = metric if metric.startswith("test") else f"test {metric}"
    split = metric is not None  # else the test score is the objective: one column
    table = Table(
        box=box.MARKDOWN if markdown else None,
        pad_edge=False,
        header_style=None if markdown else "bold",
    )
    table.add_column("tuner")
    rows = summary["tuners"].values()
    # with a fidelity: trials pruned, and steps that continuation took from the cache
    stepped = any(row.get("pruned_mean") or row.get("continued_steps_mean") for row in rows)
    for header in (
        "trials",
        *(["pruned", "steps continued"] if stepped else []),
        score,
        *(["best objective"] if split else []),
        "gain vs others",
        f"W/T/L vs {reference}",
        "p (Wilcoxon)",
        "budget in hits",
        "budget in tuner",
        "tuner s",
        "s/proposal",
    ):
        table.add_column(header, justify="right")
    for tuner, row in summary["tuners"].items():
        pair = row.get("paired")
        table.add_row(
            tuner,
            f"{row['trials_mean']:.1f} ± {row['trials_sem']:.1f}",
            *(
                [f"{row.get('pruned_mean', 0):.1f}", f"{row.get('continued_steps_mean', 0):.1f}"]
                if stepped
                else []
            ),
            _mean(row.get("test_mean"), row.get("test_sem")),
            *([_mean(row["best_mean"], row["best_sem"])] if split else []),
            _percent(row.get("gain_vs_baselines")),
            "–" if pair is None else f"{pair['wins']}/{pair['ties']}/{pair['losses']}",
            "–" if pair is None or pair["p_value"] is None else f"{pair['p_value']:.3g}",
            f"{100 * row['cache_hit_share']:.1f}%",
            f"{100 * row['tuner_share']:.1f}%",
            f"{row['tuner_seconds_total']:.1f}",
            f"{row['tuner_seconds_per_proposal']:.3f}",
        )
    out = io.StringIO()
    Console(file=out, width=WIDTH, color_system=None, soft_wrap=False).print(table)
    lines = [heading(summary)]
    commands = "\n".join(p["command"] for p in _provenances(summary) if p.get("command"))
    if commands and markdown:
        lines = [f"```bash\n{commands}\n```\n", *lines, ""]
    elif commands:
        lines = ["\n".join(f"$ {c}" for c in commands.splitlines()), *lines]
    return (
        "\n".join(lines) + "\n" + "\n".join(line.rstrip() for line in out.getvalue().splitlines())
    )


def heading(summary: dict[str, Any]) -> str:
    amount = f"budget {summary['budget']}" if summary["budget"] else f"{summary['trials']} trials"
    workers = f", {summary['workers']} workers" if summary.get("workers", 1) > 1 else ""
    times = [p["wall_seconds"] for p in _provenances(summary) if p.get("wall_seconds")]
    took = f", took {sum(times):.0f} s" if times else ""
    record = summary.get("provenance") or {}
    unfinished = record.get("finished_runs", 0) < record.get("planned_runs", 0)
    if unfinished:  # a table written while its runs went on, or left by a stopped bench
        took += f", {record['finished_runs']} of {record['planned_runs']} runs"
    return (
        f"{summary['pipeline']}, {amount}{workers}, {summary['seeds']} seeds{took} "
        f"({summary['direction']}; mean ± standard error over seeds; W/T/L: test-score wins, "
        f"ties, losses against {summary.get('reference')} on the same seed)"
    )


def _provenances(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the table's runs came from: one record, or one per table merged into it."""
    record = summary.get("provenance") or {}
    return record.get("merged", [record])


def _mean(mean: float | None, sem: float | None) -> str:
    return "–" if mean is None else f"{mean:.4f} ± {sem or 0.0:.4f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:+.0f}%"
