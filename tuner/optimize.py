"""Maximizing the acquisition over the empty prefix and every cached prefix at once.

Each prefix pins the columns of its first δ stages to the exact encoded
values of a cached configuration. All prefixes' raw candidates (the same
scrambled Sobol points, with the prefix's columns pinned) are screened in one
batched evaluation; the best few, whatever their prefix, are then polished
together by L-BFGS-B (BoTorch's ``gen_candidates_scipy``) with per-start
bounds that hold each start's pinned columns fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.generation.gen import gen_candidates_scipy
from torch.quasirandom import SobolEngine

from .encoding import SpaceEncoder

#: The fewest raw samples any prefix is screened with.
MIN_RAW_SAMPLES = 32

AcquisitionFactory = Callable[[torch.Tensor, torch.Tensor], AcquisitionFunction]


@dataclass(frozen=True)
class Prefix:
    """Stages ``0..depth-1`` reused from the cache (``depth=0``: nothing reused)."""

    depth: int
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached_cost: float = 0.0
    key: str | None = None
    score: float | None = None  # the best objective reached through it, if any
    #: a continued training run: the step of the cached checkpoint that stage
    #: ``depth - 1`` goes on from (its steps so far are in ``cached_cost``'s stead)
    resumes: int | None = None


@dataclass(frozen=True)
class Candidate:
    row: torch.Tensor
    prefix: Prefix
    value: float  # log acquisition


def optimize_over_prefixes(
    make_acquisition: AcquisitionFactory,
    prefixes: list[Prefix],
    encoder: SpaceEncoder,
    *,
    seed: int,
    raw_samples: int = 256,
    polish: int = 3,
    maxiter: int = 30,
) -> list[Candidate]:
    """Candidates sorted by acquisition value, best first (the polished ones lead).

    A prefix that pins some columns leaves fewer free dimensions to screen: it
    gets raw samples in proportion (the leading points of the same Sobol draw,
    at least ``MIN_RAW_SAMPLES``).
    """
    raw = SobolEngine(encoder.dim, scramble=True, seed=seed).draw(raw_samples, dtype=torch.float64)
    rows, depth, cached, owners = [], [], [], []
    for index, prefix in enumerate(prefixes):
        end = encoder.prefix_end(prefix.depth)
        count = max(MIN_RAW_SAMPLES, math.ceil(raw_samples * (encoder.dim - end) / encoder.dim))
        if end == encoder.dim:  # every column pinned: one point
            count = 1
        block = raw[: min(count, raw_samples)].clone()
        if end:
            block[:, :end] = encoder.encode_prefix(prefix.config, prefix.depth)
        rows.append(block)
        depth += [prefix.depth] * len(block)
        cached += [prefix.cached_cost] * len(block)
        owners += [index] * len(block)
    X = torch.cat(rows)
    depth_t = torch.tensor(depth, dtype=torch.long)
    cached_t = torch.tensor(cached, dtype=torch.float64)
    owners_t = torch.tensor(owners)
    with torch.no_grad():
        values = torch.cat(
            [
                make_acquisition(depth_t[i : i + 2048], cached_t[i : i + 2048])(
                    X[i : i + 2048].unsqueeze(1)
                )
                for i in range(0, len(X), 2048)
            ]
        )
    order = torch.argsort(values, descending=True)
    best = order[:polish]
    starts = X[best].unsqueeze(1)
    lower, upper = torch.zeros_like(starts), torch.ones_like(starts)
    for i, start in enumerate(best.tolist()):
        end = encoder.prefix_end(int(depth_t[start]))
        lower[i, 0, :end] = upper[i, 0, :end] = X[start, :end]
    polished, polished_values = gen_candidates_scipy(
        initial_conditions=starts,
        acquisition_function=make_acquisition(depth_t[best], cached_t[best]),
        lower_bounds=lower,
        upper_bounds=upper,
        options={"maxiter": maxiter},
        use_parallel_mode=False,
    )
    candidates = []
    for i, start in enumerate(best.tolist()):
        row = polished[i, 0].detach().clone()
        end = encoder.prefix_end(int(depth_t[start]))
        row[:end] = X[start, :end]  # pinned exactly, whatever the optimizer's rounding
        candidates.append(Candidate(row, prefixes[int(owners_t[start])], float(polished_values[i])))
    candidates.sort(key=lambda c: c.value, reverse=True)
    for start in order[polish:].tolist():  # the screened rest: fallbacks for duplicates
        candidates.append(Candidate(X[start], prefixes[int(owners_t[start])], float(values[start])))
    return candidates
