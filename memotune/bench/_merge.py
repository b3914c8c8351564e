"""One table from several saved ones: runs made at different times on the same
pipeline and budget (a changed tuner rerun beside peers whose code did not
change, or more seeds for every tuner), recomputed as if run together, with
each file's provenance kept."""

from __future__ import annotations

from typing import Any

from ._runs import RunFailure, RunResult
from ._stats import summarize

#: What must agree for runs of two saved tables to be compared.
SAME = ("pipeline", "budget", "trials", "direction", "cost_unit", "workers", "objective")


def merge_tables(saved: list[dict[str, Any]], reference: str | None = None) -> dict[str, Any]:
    """The table of every run in ``saved``; a (tuner, seed) run in several takes the last
    one. ``reference`` defaults to the first table's. One table is recomputed as it is,
    its provenance kept."""
    first = saved[0]
    for table in saved[1:]:
        differ = [k for k in SAME if table.get(k) != first.get(k)]
        if differ:
            details = ", ".join(f"{k}: {first.get(k)!r} vs {table.get(k)!r}" for k in differ)
            raise ValueError(f"these tables ran different benchmarks ({details})")
    source: dict[tuple[str, int], int] = {}  # (tuner, seed) → the table its outcome comes from
    for index, table in enumerate(saved):
        for outcome in [*table["runs"], *table["failed_runs"]]:
            source[outcome["tuner"], outcome["seed"]] = index

    def kept(index: int, outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [o for o in outcomes if source[o["tuner"], o["seed"]] == index]

    order = list(dict.fromkeys(t for table in saved for t in table["tuners"]))
    runs = [_run(r) for i, table in enumerate(saved) for r in kept(i, table["runs"])]
    runs.sort(key=lambda r: (order.index(r.tuner), r.seed))
    failures = [
        RunFailure(**f) for i, table in enumerate(saved) for f in kept(i, table["failed_runs"])
    ]
    reference = reference or first["reference"]
    if reference not in order:
        raise ValueError(f"reference {reference!r} is in none of the tables ({order})")
    merged = []  # where the kept runs came from: each file's record (or records, if merged)
    for index, table in enumerate(saved):
        for record in _records(table):
            gave = {
                tuner: kept_seeds
                for tuner, seeds in record["runs"].items()
                if (kept_seeds := [s for s in seeds if source[tuner, s] == index])
            }
            if gave:
                merged.append({**record, "runs": gave})
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
        provenance=first.get("provenance") if len(saved) == 1 else {"merged": merged},
    )


def _records(table: dict[str, Any]) -> list[dict[str, Any]]:
    """A saved table's provenance as records of the runs each gave."""
    provenance = table.get("provenance") or {}
    if "merged" in provenance:
        return provenance["merged"]
    runs: dict[str, list[int]] = {}
    for outcome in [*table["runs"], *table["failed_runs"]]:
        runs.setdefault(outcome["tuner"], []).append(outcome["seed"])
    return [{"runs": {t: sorted(s) for t, s in runs.items()}, **provenance}]


def _run(saved: dict[str, Any]) -> RunResult:
    return RunResult(**{**saved, "curve": [tuple(point) for point in saved["curve"]]})
