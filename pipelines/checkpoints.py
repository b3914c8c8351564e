"""Checkpoints of stages with a fidelity, kept in the stage cache to be continued.

A stage with a fidelity (``@stage(fidelity="epochs")``) keeps its state at
some steps with ``context.checkpoint(step, state)``. The state after ``s``
steps is stored under the key the stage would have with its fidelity set to
``s``, tagged as a checkpoint: the same name, version and other settings, and
the same upstream key. So a later run continues only a checkpoint of the very
same training on the very same upstream output; anything else is a different
key and is never found. Checkpoints have a lineage of their own, so the tuner
never mistakes one for a stage output it could reuse as a prefix.

An entry's ``cost`` is what reaching its step cost from scratch (the
checkpoint it went on from, plus the steps run since), so the cache reports
true compute figures for continued work too.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memotune.cache import StageCache

from .keys import canonical_json, lineage_key, stage_key
from .pipeline import Pipeline, StagePlan
from .stage import Checkpoint

#: What tells a checkpoint's key and lineage from the stage output's.
TAG = "#checkpoint"


@dataclass(frozen=True)
class Found:
    """A cached checkpoint, and what reaching it cost from scratch."""

    checkpoint: Checkpoint
    cost: float
    history: list[dict[str, float]]


@dataclass(frozen=True)
class Resumable:
    """The deepest cached checkpoint of one training run, which a trial with the same
    settings and more steps would go on from: stage ``index`` of ``config`` (stages
    ``0..index``, its ``fidelity`` at ``step``), on the upstream output ``parent_key``,
    and what reaching it cost from scratch."""

    index: int
    fidelity: str
    config: dict[str, dict[str, Any]]
    step: int
    cost: float
    parent_key: str
    load_seconds: float | None
    size_bytes: int

    @property
    def run(self) -> tuple[str, str]:
        *_, params = self.config.values()
        return training_run(self.parent_key, params, self.fidelity)

    def with_steps(self, steps: int) -> dict[str, dict[str, Any]]:
        """The configuration (stages ``0..index``) trained for ``steps`` steps."""
        *_, stage = self.config
        return {**self.config, stage: {**self.config[stage], self.fidelity: int(steps)}}


def training_run(parent_key: str, params: dict[str, Any], fidelity: str) -> tuple[str, str]:
    """What identifies a training run whatever its steps: its upstream output's key and its
    settings but the fidelity."""
    return parent_key, canonical_json({k: v for k, v in params.items() if k != fidelity})


def checkpoint_key(plan: StagePlan, step: int) -> str:
    return stage_key(plan.stage.name + TAG, plan.stage.version, _at(plan, step), plan.parent_key)


def checkpoint_lineage(stage_lineage: str) -> str:
    """The lineage of a stage's checkpoints, given the stage's own."""
    return lineage_key(stage_lineage, TAG, "")


def nearest(cache: StageCache | None, plan: StagePlan) -> Found | None:
    """The cached checkpoint with the most steps at or below the plan's fidelity, of the
    same settings on the same upstream output; ``None`` if there is none (or it cannot
    be loaded)."""
    if cache is None:
        return None
    fidelity = plan.stage.fidelity
    target = int(plan.params[fidelity])
    steps = sorted(
        {
            step
            for info in cache.entries_of(checkpoint_lineage(plan.lineage))
            if (step := int(info.params.get(fidelity, target + 1))) <= target
            and info.key == checkpoint_key(plan, step)  # same settings, same upstream
        },
        reverse=True,
    )
    for step in steps:  # the deepest that still loads
        hit = cache.get(checkpoint_key(plan, step))
        if hit is not None:
            payload = hit.value
            return Found(Checkpoint(step, payload["state"]), hit.info.cost, payload["history"])
    return None


def base_of(plan: StagePlan) -> StagePlan | None:
    """The run that ``plan``'s stage run starts from (:attr:`Stage.warm_start`): the same
    stage on the same upstream output with the settings its rule names; ``None`` if it
    starts from scratch."""
    rule = plan.stage.warm_start
    params = rule(dict(plan.params)) if rule is not None else None
    if params is None:
        return None
    stage = plan.stage
    key = stage_key(stage.name, stage.version, params, plan.parent_key)
    return dataclasses.replace(plan, params=dict(params), key=key)


def resumable(cache: StageCache, pipeline: Pipeline) -> list[Resumable]:
    """Every training run of ``pipeline`` that a trial could continue: per stage with a
    fidelity, and per training run (:func:`training_run`), the cached checkpoint with
    the most steps."""
    found: dict[tuple[str, str], Resumable] = {}
    for index, stage in enumerate(pipeline.stages):
        if stage.fidelity is None:
            continue
        for info in cache.entries_of(checkpoint_lineage(pipeline.lineages[index])):
            step = int(info.params[stage.fidelity])
            run = training_run(info.parent_key, info.params, stage.fidelity)
            if run in found and found[run].step >= step:
                continue
            config = {link["stage"]: dict(link["params"]) for link in info.chain[:-1]}
            config[stage.name] = dict(info.params)
            found[run] = Resumable(
                index,
                stage.fidelity,
                config,
                step,
                info.cost,
                info.parent_key,
                info.load_seconds,
                info.size_bytes,
            )
    return list(found.values())


def keeper(
    cache: StageCache | None,
    plan: StagePlan,
    chain: list[dict[str, Any]],
    history: list[dict[str, float]],
    resumed: Found | None,
) -> Callable[[int, Any], None] | None:
    """The function behind ``context.checkpoint`` for one run of ``plan``'s stage:
    stores the state at a step with what reaching it cost and the stepped metrics so
    far (``history``, the context's own list). ``None`` without a cache."""
    if cache is None:
        return None
    started = time.perf_counter()
    before = resumed.cost if resumed is not None else 0.0

    def keep(step: int, state: Any) -> None:
        cost = before + time.perf_counter() - started  # from scratch to this step
        params = _at(plan, step)
        link = {
            "stage": plan.stage.name + TAG,
            "version": plan.stage.version,
            "params": params,
            "cost": cost,
            "compute_seconds": cost,
        }
        try:
            cache.put(
                checkpoint_key(plan, step),
                {"state": state, "history": list(history)},
                stage=plan.stage.name + TAG,
                version=plan.stage.version,
                params=params,
                parent_key=plan.parent_key,
                lineage=checkpoint_lineage(plan.lineage),
                chain=[*chain, link],
                cost=cost,
                compute_seconds=cost,
            )
        except Exception as error:  # noqa: BLE001 - an unstorable state must not fail the run
            warnings.warn(
                f"the checkpoint of stage '{plan.stage.name}' at step {step} could not be "
                f"cached ({type(error).__name__}: {error}); training goes on without it",
                stacklevel=2,
            )

    return keep


def _at(plan: StagePlan, step: int) -> dict[str, Any]:
    """The plan's settings with its fidelity set to ``step``."""
    return {**plan.params, plan.stage.fidelity: int(step)}
