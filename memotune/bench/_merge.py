"""One table from several saved ones: tuners run at different times on the same
pipeline, seeds and budget (e.g. a changed tuner rerun beside peers whose code
did not change), recomputed as if run together, each tuner's provenance kept."""

from __future__ import annotations

from typing import Any

from ._runs import RunFailure, RunResult
from ._stats import summarize

#: What must agree for runs of two saved tables to be compared.
SAME = ("pipeline", "budget", "trials", "direction", "cost_unit", "workers", "objective")


def merge_tables(saved: list[dict[str, Any]], reference: str | None = None) -> dict[str, Any]:
    """The table of every tuner in ``saved``; a tuner in several takes its runs from the
    last one. ``reference`` defaults to the first table's."""
    first = saved[0]
    for table in saved[1:]:
        differ = [k for k in SAME if table.get(k) != first.get(k)]
        if differ:
            details = ", ".join(f"{k}: {first.get(k)!r} vs {table.get(k)!r}" for k in differ)
            raise ValueError(f"these tables ran different benchmarks ({details})")
    source: dict[str, int] = {}  # tuner → index of the table its runs come from
    for index, table in enumerate(saved):
        for tuner in table["tuners"]:
            source[tuner] = index
    runs = [
        _run(r)
        for index, table in enumerate(saved)
        for r in table["runs"]
        if source[r["tuner"]] == index
    ]
    failures = [
        RunFailure(**f)
        for index, table in enumerate(saved)
        for f in table["failed_runs"]
        if source.get(f["tuner"]) == index
    ]
    reference = reference or first["reference"]
    if reference not in source:
        raise ValueError(f"reference {reference!r} is in none of the tables ({sorted(source)})")
    order = list(source)  # first seen first: the first table's tuners keep their rows
    runs.sort(key=lambda r: order.index(r.tuner))
    return summarize(
        runs,
        pipeline=first["pipeline"],
        budget=first["budget"],
        trials=first["trials"],
        direction=first["direction"],
        cost_unit=first["cost_unit"],
        workers=first["workers"],
        failures=failures,
        objective=first["objective"],
        test_metric=first["test_metric"],
        reference=reference,
        provenance={
            "merged": [
                {"tuners": [t for t, i in source.items() if i == index], **table["provenance"]}
                for index, table in enumerate(saved)
                if index in source.values()
            ]
        },
    )


def _run(saved: dict[str, Any]) -> RunResult:
    return RunResult(**{**saved, "curve": [tuple(point) for point in saved["curve"]]})
