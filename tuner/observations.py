"""What the GP tuners learn from: finished trials as unit-cube rows, objectives
and true per-stage compute costs."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch

from memotune.pipelines import ConfigError, Pipeline, TrialRecord, canonical_json

from .encoding import SpaceEncoder

#: Costs are modelled on a log scale; this floor keeps log() finite.
MIN_COST = 1e-6


@dataclass
class Observation:
    config: dict
    row: torch.Tensor
    value: float | None  # the objective, sign-flipped so larger is better; None if failed
    stage_costs: list[float | None]  # true compute cost per stage; None where it never ran
    keys: list[str]
    #: pruned before its last stage: no objective, but no failure either
    stopped_early: bool = False
    #: what the pruner forecast such a trial's objective to be (sign-flipped like ``value``)
    forecast: float | None = None


class Observations:
    """Finished trials, in the order they were told."""

    def __init__(self, pipeline: Pipeline, encoder: SpaceEncoder) -> None:
        self.pipeline = pipeline
        self.encoder = encoder
        self.items: list[Observation] = []
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self.items)

    def add(self, record: TrialRecord) -> None:
        config = self.pipeline.validate(record.config)
        objective = record.objective if record.completed else None
        stopped = stopped_at(self.pipeline, record)
        if stopped is not None:  # seen, exactly, at the fidelity where it stopped
            config, objective = stopped
        costs: list[float | None] = [None] * len(self.pipeline.stages)
        for index, stage in enumerate(record.stages):  # a failed stage cost what it measured
            if record.pruned and stage.error is not None and stopped is None:
                continue  # stopped early: what it cost says little of a whole run
            # a continued stage: what it costs from scratch, as a cache hit reports it
            costs[index] = max(float(stage.cost + stage.resumed_cost), MIN_COST)
        stopped_early = record.pruned and stopped is None
        value, forecast = self._flipped(objective), self._flipped(record.forecast)
        self.items.append(
            Observation(
                config=config,
                row=self.encoder.encode(config),
                value=value,
                stage_costs=costs,
                keys=self.pipeline.keys(config),
                stopped_early=stopped_early,
                forecast=forecast if stopped_early else None,
            )
        )
        self._seen.add(canonical_json(config))

    def _flipped(self, objective: float | None) -> float | None:
        """``objective`` with larger better."""
        if objective is None:
            return None
        return objective if self.pipeline.maximize else -objective

    def seen(self, config: dict) -> bool:
        return canonical_json(config) in self._seen

    def objective_data(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Rows and values (larger is better); failed trials take the worst value seen,
        so the optimizer keeps away from them. A trial pruned before its last stage
        takes what the pruner forecast from its reports (one far behind at its rung is
        likely far from the best, one just behind close to typical), or without a
        forecast the median value seen: it was behind at its rung, which says it is no
        contender, not that it is as bad as a failure (with most trials pruned, the
        worst value would teach the model that almost everything is). Leaving it out
        did worse on the language pipeline (test perplexity 8.55 against 8.05, 4 of 5
        seeds: docs/benchmarks.md). ``None`` until a trial completed."""
        values = [o.value for o in self.items if o.value is not None]
        if not values:
            return None
        worst, typical = min(values), statistics.median(values)
        X = torch.stack([o.row for o in self.items])
        Y = torch.tensor([[_imputed(o, worst, typical)] for o in self.items], dtype=torch.float64)
        return X, Y

    def stage_cost_data(self, stage: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Rows and log true costs of stage ``stage``, one per distinct stage-``stage`` key
        (trials that share the prefix share the cost; a cache hit carries the true cost)."""
        rows, costs, keys = [], [], set()
        for o in self.items:
            cost = o.stage_costs[stage]
            if cost is None or o.keys[stage] in keys:
                continue
            keys.add(o.keys[stage])
            rows.append(o.row)
            costs.append([math.log(cost)])
        if not rows:
            return None
        return torch.stack(rows), torch.tensor(costs, dtype=torch.float64)

    def total_cost_data(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Rows and log true total costs of trials whose every stage cost is known."""
        rows, costs = [], []
        for o in self.items:
            if all(c is not None for c in o.stage_costs):
                rows.append(o.row)
                costs.append([math.log(sum(o.stage_costs))])
        if not rows:
            return None
        return torch.stack(rows), torch.tensor(costs, dtype=torch.float64)

    def best_through_prefixes(self) -> dict[str, float]:
        """The best objective reached through each prefix key (stages ``0..k`` of a
        trial, for every k but the last), in one pass over the trials."""
        best: dict[str, float] = {}
        for o in self.items:
            if o.value is None:
                continue
            for key in o.keys[:-1]:
                if key not in best or o.value > best[key]:
                    best[key] = o.value
        return best


def _imputed(observation: Observation, worst: float, typical: float) -> float:
    if observation.value is not None:
        return observation.value
    if not observation.stopped_early:
        return worst
    return typical if observation.forecast is None else observation.forecast


def stopped_at(pipeline: Pipeline, record: TrialRecord) -> tuple[dict, float] | None:
    """A pruned trial whose stopped stage is the pipeline's last and reported the objective
    at its last step: its configuration at that step's fidelity and that objective (what
    the trial would have returned, had it asked for that fidelity); else ``None``."""
    if not record.pruned or len(record.stages) != len(pipeline.stages):
        return None
    last, stage = pipeline.stages[-1], record.stages[-1]
    if last.fidelity is None or not stage.history:
        return None
    *_, report = stage.history
    value = report.get(pipeline.objective)
    if value is None or not math.isfinite(value):
        return None
    config = {name: dict(params) for name, params in record.config.items()}
    config[last.name][last.fidelity] = int(report["step"])
    try:
        return pipeline.validate(config), float(value)
    except ConfigError:  # a step outside the fidelity's range
        return None
