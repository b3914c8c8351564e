"""A pipeline: a chain of stages, the objective its last stage reports, and
how its configurations map to prefix keys."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import joblib

from .keys import ROOT_KEY, lineage_key, stage_key
from .records import StageRecord
from .space import Param, SpaceError, plain_scalar
from .stage import Stage

DIRECTIONS = ("maximize", "minimize")


class ConfigError(ValueError):
    """A configuration that does not fit the pipeline's search space."""


class ObjectiveError(ValueError):
    """The last stage did not report the pipeline's objective."""


@dataclass(frozen=True)
class StagePlan:
    """Where one stage of a configuration stands: its params and keys."""

    index: int
    stage: Stage
    params: dict[str, Any]
    key: str
    parent_key: str
    lineage: str


class Pipeline:
    """A chain of stages; each stage's output feeds the next.

    ``objective`` names the metric the last stage reports (a bare float is
    taken as that metric) and ``direction`` says whether to maximize it.
    ``inputs`` go to the first stage and are part of its key. ``cost_unit`` is
    ``"seconds"`` unless stages report their own cost in other units (then the
    tuner's time is reported beside the budget rather than charged to it);
    ``hit_cost`` fixes what a cache hit charges (default: its load seconds).
    ``test_metric`` names a metric the last stage reports on a held-out test
    split: a study records it but never tells it to the tuner (nor any other
    metric named ``test_*``), and ``memotune bench`` scores each run's
    incumbent (chosen by the objective) by it.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        objective: str = "objective",
        direction: str = "maximize",
        inputs: Any = None,
        *,
        name: str | None = None,
        cost_unit: str = "seconds",
        hit_cost: float | None = None,
        test_metric: str | None = None,
    ) -> None:
        stages = list(stages)
        if not stages:
            raise SpaceError("a pipeline needs at least one stage")
        for s in stages:
            if not isinstance(s, Stage):
                raise SpaceError(f"pipeline stages must be Stage objects (use @stage), got {s!r}")
        names = [s.name for s in stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SpaceError(f"pipeline has duplicate stage names: {duplicates}")
        if direction not in DIRECTIONS:
            raise SpaceError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if not isinstance(objective, str) or not objective:
            raise SpaceError(f"objective must be a metric name, got {objective!r}")
        if test_metric is not None and (
            not isinstance(test_metric, str) or not test_metric or test_metric == objective
        ):
            raise SpaceError(
                f"test_metric must be a metric name other than the objective, got {test_metric!r}"
            )
        if hit_cost is not None and hit_cost < 0:
            raise SpaceError(f"hit_cost must be >= 0, got {hit_cost}")
        self.stages = stages
        self.objective = objective
        self.direction = direction
        self.inputs = inputs
        self.name = name or "-".join(names)
        self.cost_unit = cost_unit
        self.hit_cost = hit_cost
        self.test_metric = test_metric
        self.root_key = ROOT_KEY if inputs is None else joblib.hash(inputs)
        self.lineages = self._lineages()

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, stages={[s.name for s in self.stages]})"

    def is_test_metric(self, name: str) -> bool:
        """A figure measured on the test split, which tuners must never see."""
        return name == self.test_metric or name.startswith("test_")

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def parameters(self) -> Iterator[tuple[str, str, Param]]:
        """Every (stage name, parameter name, parameter) in pipeline order."""
        for s in self.stages:
            for name, param in s.space.items():
                yield s.name, name, param

    def validate(self, config: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Check a configuration and return it normalized (plain scalars, pipeline order).

        Stages with an empty search space may be left out.
        """
        if not isinstance(config, dict):
            raise ConfigError(f"a configuration is a dict of stage name to params, got {config!r}")
        known = {s.name for s in self.stages}
        extra = sorted(set(config) - known)
        if extra:
            raise ConfigError(
                f"configuration names unknown stages {extra}; stages: {sorted(known)}"
            )
        normalized = {}
        for s in self.stages:
            given = config.get(s.name)
            if given is None:
                if s.space:
                    raise ConfigError(f"configuration is missing stage '{s.name}'")
                given = {}
            if not isinstance(given, dict):
                raise ConfigError(f"stage '{s.name}': params must be a dict, got {given!r}")
            missing = sorted(set(s.space) - set(given))
            if missing:
                raise ConfigError(f"stage '{s.name}': missing parameters {missing}")
            unknown = sorted(set(given) - set(s.space))
            if unknown:
                raise ConfigError(
                    f"stage '{s.name}': unknown parameters {unknown}; space: {sorted(s.space)}"
                )
            try:
                normalized[s.name] = {
                    name: param.validate(given[name], f"stage '{s.name}', parameter '{name}'")
                    for name, param in s.space.items()
                }
            except SpaceError as error:
                raise ConfigError(str(error)) from None
        return normalized

    def plan(self, config: dict[str, dict[str, Any]]) -> list[StagePlan]:
        """Validate ``config`` and compute every stage's key."""
        config = self.validate(config)
        plans, parent = [], self.root_key
        for index, s in enumerate(self.stages):
            params = config[s.name]
            key = stage_key(s.name, s.version, params, parent)
            plans.append(StagePlan(index, s, params, key, parent, self.lineages[index]))
            parent = key
        return plans

    def keys(self, config: dict[str, dict[str, Any]]) -> list[str]:
        """The prefix key of every stage for ``config``."""
        return [p.key for p in self.plan(config)]

    def objective_from(self, output: Any) -> tuple[float, dict[str, float]]:
        """The objective and all metrics from the last stage's output."""
        last = self.stages[-1].name
        output = plain_scalar(output)
        if isinstance(output, dict):
            metrics = {str(k): plain_scalar(v) for k, v in output.items()}
            if self.objective not in metrics:
                raise ObjectiveError(
                    f"stage '{last}' returned metrics {sorted(metrics)} without the objective "
                    f"'{self.objective}'"
                )
        elif isinstance(output, (int, float)) and not isinstance(output, bool):
            metrics = {self.objective: output}
        else:
            raise ObjectiveError(
                f"stage '{last}' must return a number or a dict of metrics containing "
                f"'{self.objective}', got {type(output).__name__}"
            )
        value = metrics[self.objective]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ObjectiveError(
                f"stage '{last}' reported objective '{self.objective}' = {value!r}"
            )
        numeric = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        return float(value), numeric

    def charge(self, record: StageRecord) -> float:
        """What one stage of a trial charges the budget."""
        if not record.hit:
            return record.cost
        if self.hit_cost is not None:
            return self.hit_cost
        return record.load_seconds

    def _lineages(self) -> list[str]:
        lineages, parent = [], self.root_key
        for s in self.stages:
            parent = lineage_key(parent, s.name, s.version)
            lineages.append(parent)
        return lineages
