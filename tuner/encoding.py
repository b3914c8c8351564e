"""Configurations to points of the unit cube and back, for the GPs.

One column per (stage, parameter), in pipeline order, so the columns of
stages 0..k form a leading block (what a cost GP of stage k and a pinned
prefix need). Floats map linearly (or on a log scale) to [0, 1]. Integers
map to a continuous relaxation: each integer owns an equal-width bin (on the
log scale when ``log``), decoded by rounding. Choices are ordinal bins.

Decoding is exact for every configuration the encoder has seen: decoding the
encoding of a known configuration returns it value for value (floats are
never pushed through an unnormalize round trip), which is what reusing a
cached prefix needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from memotune.pipelines import Choice, Float, Int, Param, Pipeline


@dataclass(frozen=True)
class Column:
    stage: int
    stage_name: str
    name: str
    param: Param


class SpaceEncoder:
    """Maps a pipeline's configurations to rows of ``[0, 1]^d`` and back."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        index = {s.name: i for i, s in enumerate(pipeline.stages)}
        self.columns = [
            Column(index[stage_name], stage_name, name, param)
            for stage_name, name, param in pipeline.parameters()
        ]
        self.dim = len(self.columns)
        self.n_stages = len(pipeline.stages)
        #: ``stage_end[k]``: one past the last column of stage k (columns of 0..k are ``[:end]``).
        self.stage_end = [
            sum(1 for c in self.columns if c.stage <= k) for k in range(self.n_stages)
        ]
        self._known: dict[tuple[int, tuple[float, ...]], dict[str, Any]] = {}

    def stage_columns(self, stage: int) -> range:
        start = self.stage_end[stage - 1] if stage > 0 else 0
        return range(start, self.stage_end[stage])

    def prefix_end(self, depth: int) -> int:
        """Number of leading columns that belong to the first ``depth`` stages."""
        return self.stage_end[depth - 1] if depth > 0 else 0

    def encode(self, config: dict[str, dict[str, Any]]) -> torch.Tensor:
        """The unit-cube row of a (valid) configuration; remembers it for exact decoding."""
        row = [_to_unit(c.param, config[c.stage_name][c.name]) for c in self.columns]
        for k, stage in enumerate(self.pipeline.stages):
            segment = tuple(row[i] for i in self.stage_columns(k))
            self._known.setdefault((k, segment), dict(config[stage.name]))
        return torch.tensor(row, dtype=torch.float64)

    def encode_prefix(self, config: dict[str, dict[str, Any]], depth: int) -> torch.Tensor:
        """The leading columns of the first ``depth`` stages of ``config``."""
        row = [
            _to_unit(c.param, config[c.stage_name][c.name]) for c in self.columns if c.stage < depth
        ]
        return torch.tensor(row, dtype=torch.float64)

    def encode_many(self, configs: list[dict[str, dict[str, Any]]]) -> torch.Tensor:
        if not configs:
            return torch.empty(0, self.dim, dtype=torch.float64)
        return torch.stack([self.encode(c) for c in configs])

    def decode(self, row: torch.Tensor) -> dict[str, dict[str, Any]]:
        """The configuration of a row (rounded to the space's grid, clipped to its bounds)."""
        values = [float(v) for v in row.detach().cpu().reshape(-1)]
        config = {}
        for k, stage in enumerate(self.pipeline.stages):
            segment = tuple(values[i] for i in self.stage_columns(k))
            known = self._known.get((k, segment))
            if known is not None:
                config[stage.name] = dict(known)
                continue
            config[stage.name] = {
                self.columns[i].name: _from_unit(self.columns[i].param, values[i])
                for i in self.stage_columns(k)
            }
        return config


def _scale(param: Float | Int) -> tuple[float, float, bool]:
    """The interval the unit cube stretches over (log-transformed when ``log``)."""
    low, high = float(param.low), float(param.high)
    if isinstance(param, Int):
        low, high = low - 0.5, high + 0.5
    if param.log:
        return math.log(low), math.log(high), True
    return low, high, False


def _to_unit(param: Param, value: Any) -> float:
    if isinstance(param, Choice):
        return (param.index(value) + 0.5) / len(param.options)
    low, high, log = _scale(param)
    t = math.log(value) if log else float(value)
    return min(1.0, max(0.0, (t - low) / (high - low)))


def _from_unit(param: Param, u: float) -> Any:
    u = min(1.0, max(0.0, u))
    if isinstance(param, Choice):
        return param.options[min(int(u * len(param.options)), len(param.options) - 1)]
    low, high, log = _scale(param)
    t = low + u * (high - low)
    value = math.exp(t) if log else t
    if isinstance(param, Int):
        return int(min(param.high, max(param.low, round(value))))
    return float(min(param.high, max(param.low, value)))
