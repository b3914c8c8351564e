"""Micro-batch planning for variable-length samples: padding, packing, and DynaPipe's
dynamic micro-batching.

A plan is a list of micro-batches; a micro-batch is a list of rows of one
padded length, a row holds one sample (padding) or several (packing). Its cost
under :class:`CostModel` is::

    time    = overhead + linear · rows·L + quadratic · rows·L²
    memory  = mem_linear · rows·L + mem_quadratic · rows·L²

the linear terms covering projections and experts over every position,
padding included, and the quadratic term attention over the whole row (a
packed row attends across its whole length: masking its samples apart saves
no compute).

- :func:`plan_padding`: samples in arrival order, a fixed number per
  micro-batch (the most that fit the memory cap at the corpus's longest
  sample), each padded to its longest sample.
- :func:`plan_packing`: samples packed first-fit-decreasing into rows of a
  fixed length, as many rows per micro-batch as fit the memory cap.
- :func:`plan_dynamic`: DynaPipe's planner (Jiang et al., "DynaPipe:
  Optimizing Multi-task Training through Dynamic Pipelines", EuroSys 2024;
  awslabs/optimizing-multitask-training-through-dynamic-pipelines). Samples
  are sorted by length and cut into consecutive micro-batches by dynamic
  programming, ``f[n] = min_{i<n} f[i] + time(i, n)``, under the memory cap
  and a limit ``t_max`` on any micro-batch's time; over candidate ``t_max``
  values it minimises ``(stages − 1)·max time + Σ times`` (a pipeline of
  ``stages`` stages is bound by its slowest micro-batch in fill and drain).
  The candidates include the baselines' own slowest micro-batch, so the DP
  alone is provably never worse than padding (sorting samples into
  consecutive groups of the same sizes never lengthens any group's longest
  sample). Packing can beat every padded split (a row of one long and many
  short samples has no padding), so the baseline plans themselves are
  candidates too, and the result is never worse than either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MODES = ("padding", "packing", "dynamic")


class PlanError(ValueError):
    """The samples cannot be planned as asked (e.g. one does not fit the memory cap)."""


@dataclass(frozen=True)
class CostModel:
    """Time and memory of a micro-batch of ``rows`` rows of length ``L``."""

    linear: float
    quadratic: float
    mem_linear: float
    mem_quadratic: float
    overhead: float = 0.0

    def compute(self, rows: int, length: int) -> float:
        """The linear and attention terms (no fixed overhead)."""
        return rows * (self.linear * length + self.quadratic * length * length)

    def time(self, rows: int, length: int) -> float:
        return self.overhead + self.compute(rows, length)

    def memory(self, rows: int, length: int) -> float:
        return rows * (self.mem_linear * length + self.mem_quadratic * length * length)

    def max_rows(self, length: int, memory_cap: float) -> int:
        """How many rows of ``length`` fit the memory cap."""
        return int(memory_cap // self.memory(1, length))

    @classmethod
    def for_transformer(
        cls,
        d_model: int,
        n_layers: int,
        d_hidden: int,
        top_k: int,
        vocab_size: int,
        n_heads: int,
        bytes_per_value: int = 4,
        overhead_tokens: float = 64.0,
    ) -> CostModel:
        """FLOPs (forward + backward ≈ 3× forward) and activation bytes of the MoE LM.

        Per position and layer: attention projections ``8·d²``, ``top_k`` experts
        ``4·d·h``; the head ``2·d·V``. Per row and layer: attention ``4·d·L²``.
        Memory keeps about ``10·d + 2·k·h`` values per position and layer and
        ``2·heads·L²`` attention values per row and layer. ``overhead_tokens``
        prices a micro-batch's fixed cost (launches, optimizer hooks) as that
        many positions of compute.
        """
        linear = 3.0 * (n_layers * (8 * d_model**2 + 4 * top_k * d_model * d_hidden))
        linear += 3.0 * 2 * d_model * vocab_size
        quadratic = 3.0 * n_layers * 4 * d_model
        mem_linear = bytes_per_value * n_layers * (10 * d_model + 2 * top_k * d_hidden)
        mem_quadratic = bytes_per_value * n_layers * 2 * n_heads
        return cls(linear, quadratic, mem_linear, mem_quadratic, overhead_tokens * linear)


@dataclass(frozen=True)
class MicroBatch:
    """Rows of sample indices, each row padded to ``length``."""

    rows: tuple[tuple[int, ...], ...]
    length: int

    @property
    def samples(self) -> list[int]:
        return [s for row in self.rows for s in row]


@dataclass
class Plan:
    """An ordered list of micro-batches covering every sample once."""

    mode: str
    micro_batches: list[MicroBatch]

    def times(self, cost: CostModel) -> list[float]:
        return [cost.time(len(mb.rows), mb.length) for mb in self.micro_batches]

    def time(self, cost: CostModel) -> float:
        return sum(self.times(cost))

    def compute(self, cost: CostModel) -> float:
        return sum(cost.compute(len(mb.rows), mb.length) for mb in self.micro_batches)

    def peak_memory(self, cost: CostModel) -> float:
        return max((cost.memory(len(mb.rows), mb.length) for mb in self.micro_batches), default=0)

    def objective(self, cost: CostModel, stages: int = 1) -> float:
        """DynaPipe's iteration time: ``(stages − 1)·max time + Σ times``."""
        times = self.times(cost)
        return (stages - 1) * max(times, default=0.0) + sum(times)


def useful_compute(lengths: Sequence[int], cost: CostModel) -> float:
    """The compute of the samples alone: each in its own row, no padding."""
    return sum(cost.compute(1, length) for length in lengths)


def compute_per_useful(plan: Plan, lengths: Sequence[int], cost: CostModel) -> float:
    """How much compute the plan spends per unit of useful compute (1.0 is no waste)."""
    return plan.compute(cost) / useful_compute(lengths, cost)


def _check(lengths: Sequence[int], cost: CostModel, memory_cap: float) -> None:
    if not lengths:
        raise PlanError("no samples to plan")
    if min(lengths) < 1:
        raise PlanError("every sample needs at least one token")
    longest = max(lengths)
    if cost.max_rows(longest, memory_cap) < 1:
        raise PlanError(
            f"a sample of {longest} tokens needs {cost.memory(1, longest):.3g} bytes, "
            f"over the memory cap of {memory_cap:.3g}"
        )


def plan_padding(lengths: Sequence[int], cost: CostModel, memory_cap: float) -> Plan:
    """Fixed-size micro-batches in arrival order, each padded to its longest sample."""
    _check(lengths, cost, memory_cap)
    size = cost.max_rows(max(lengths), memory_cap)
    batches = []
    for start in range(0, len(lengths), size):
        ids = range(start, min(start + size, len(lengths)))
        batches.append(MicroBatch(tuple((i,) for i in ids), max(lengths[i] for i in ids)))
    return Plan("padding", batches)


def plan_packing(
    lengths: Sequence[int], cost: CostModel, memory_cap: float, row_length: int | None = None
) -> Plan:
    """Rows of ``row_length`` (default: the longest sample) filled first-fit-decreasing."""
    _check(lengths, cost, memory_cap)
    row_length = row_length or max(lengths)
    if max(lengths) > row_length:
        raise PlanError(f"a sample of {max(lengths)} tokens does not fit rows of {row_length}")
    if cost.max_rows(row_length, memory_cap) < 1:
        raise PlanError(f"a packed row of {row_length} tokens does not fit the memory cap")
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_length - lengths[i])
    per_batch = cost.max_rows(row_length, memory_cap)
    batches = [
        MicroBatch(tuple(tuple(row) for row in rows[s : s + per_batch]), row_length)
        for s in range(0, len(rows), per_batch)
    ]
    return Plan("packing", batches)


def plan_dynamic(
    lengths: Sequence[int],
    cost: CostModel,
    memory_cap: float,
    stages: int = 1,
    candidates: int = 16,
) -> Plan:
    """DynaPipe's dynamic micro-batching (see the module docstring)."""
    _check(lengths, cost, memory_cap)
    order = np.argsort(np.asarray(lengths), kind="stable")
    sorted_lengths = np.asarray(lengths)[order]
    baselines = [plan_padding(lengths, cost, memory_cap), plan_packing(lengths, cost, memory_cap)]

    best: Plan | None = None
    best_value = math.inf
    for t_max in _t_max_candidates(sorted_lengths, cost, memory_cap, candidates, baselines):
        cuts = _partition(sorted_lengths, cost, memory_cap, t_max)
        if cuts is None:
            continue
        plan = Plan("dynamic", _micro_batches(order, sorted_lengths, cuts))
        value = plan.objective(cost, stages)
        if value < best_value:
            best, best_value = plan, value
    for baseline in baselines:
        if baseline.objective(cost, stages) < best_value:
            best, best_value = (
                Plan("dynamic", baseline.micro_batches),
                baseline.objective(cost, stages),
            )
    assert best is not None  # t_max = inf is always feasible once _check passed
    return best


def make_plan(
    mode: str, lengths: Sequence[int], cost: CostModel, memory_cap: float, stages: int = 1
) -> Plan:
    """The plan of micro-batching ``mode`` (padding, packing or dynamic)."""
    if mode == "padding":
        return plan_padding(lengths, cost, memory_cap)
    if mode == "packing":
        return plan_packing(lengths, cost, memory_cap)
    if mode == "dynamic":
        return plan_dynamic(lengths, cost, memory_cap, stages)
    raise ValueError(f"micro-batching must be one of {', '.join(MODES)}, got {mode!r}")


def _t_max_candidates(
    sorted_lengths: np.ndarray,
    cost: CostModel,
    memory_cap: float,
    count: int,
    baselines: list[Plan],
) -> list[float]:
    """No limit, the baselines' slowest micro-batches, and a geometric grid from the
    slowest single sample to the slowest micro-batch the memory cap allows."""
    longest = int(sorted_lengths[-1])
    low = cost.time(1, longest)
    high = max(
        cost.time(min(cost.max_rows(int(length), memory_cap), len(sorted_lengths)), int(length))
        for length in np.unique(sorted_lengths)
    )
    grid = np.geomspace(low, max(high, low), num=max(count, 2)).tolist()
    from_baselines = [max(b.times(cost)) for b in baselines]
    return sorted(set(grid + from_baselines)) + [math.inf]


def _partition(
    sorted_lengths: np.ndarray, cost: CostModel, memory_cap: float, t_max: float
) -> list[int] | None:
    """Cut points of the cheapest split into consecutive micro-batches, or None if
    some sample alone breaks ``t_max``. ``f[n] = min_i f[i] + time(i, n)``."""
    n_samples = len(sorted_lengths)
    f = np.full(n_samples + 1, math.inf)
    f[0] = 0.0
    choice = np.zeros(n_samples + 1, dtype=np.int64)
    for n in range(1, n_samples + 1):
        length = int(sorted_lengths[n - 1])  # the longest of samples i..n-1
        per_row = cost.compute(1, length)
        most = min(n, cost.max_rows(length, memory_cap))
        if math.isfinite(t_max) and per_row > 0:  # (1 + 1e-9): t_max may be a baseline's time
            most = min(most, math.floor((t_max - cost.overhead) / per_row * (1 + 1e-9)))
        if most < 1:
            return None
        starts = np.arange(n - most, n)
        totals = f[n - most : n] + cost.overhead + (n - starts) * per_row
        best = int(np.argmin(totals))
        f[n], choice[n] = totals[best], starts[best]
    cuts, n = [], n_samples
    while n > 0:
        cuts.append(n)
        n = int(choice[n])
    return [0, *reversed(cuts)]


def _micro_batches(
    order: np.ndarray, sorted_lengths: np.ndarray, cuts: list[int]
) -> list[MicroBatch]:
    return [
        MicroBatch(tuple((int(order[i]),) for i in range(a, b)), int(sorted_lengths[b - 1]))
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
