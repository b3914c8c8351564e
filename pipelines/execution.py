"""Running stages through the cache: the parts every runner shares.

A trial first looks for the deepest stage whose output is cached and loads
only that one (the stages before it are not needed), then runs the remaining
stages in order, storing each output under its key as soon as it is made,
so a later failure loses none of the finished work.
"""

from __future__ import annotations

import getpass
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from memotune.cache import Hit, StageCache

from . import checkpoints
from .pipeline import Pipeline, StagePlan
from .records import FAILED, PRUNED, StageRecord
from .stage import Judge, Output, StageContext, TrialPruned

_PAYLOAD_TAG = "memotune.stage-output/1"


class StageFailed(Exception):
    """A stage raised; carries its record (with the measured cost) and the traceback.
    ``status`` is the trial's: ``failed``, or ``pruned`` when the stage stopped because
    the study's pruner said so."""

    def __init__(
        self,
        record: StageRecord,
        trace: str,
        before: list[StageRecord] | None = None,
        status: str = FAILED,
    ) -> None:
        reason = record.error if status == PRUNED else f"failed: {record.error}"
        super().__init__(f"stage '{record.stage}' {reason}")
        self.record = record
        self.trace = trace
        #: records of the stages the same task covered before the failing one
        self.before = list(before or [])
        self.status = status

    def __reduce__(self):  # crosses process boundaries (Ray tasks) intact
        return (StageFailed, (self.record, self.trace, self.before, self.status))


def _user_traceback(error: BaseException) -> str:
    """The traceback from the stage function down: the frame here that called it is
    left out, so the first line a user reads is their own code."""
    frames = error.__traceback__.tb_next if error.__traceback__ is not None else None
    return "".join(traceback.format_exception(type(error), error, frames))


def workdir_for(cache: StageCache | None, key: str) -> Path:
    """A scratch folder for one stage key (its checkpoints, its Ray Train storage): the
    cache's own for this node; without a cache, a temporary folder of the user's own."""
    if cache is not None:
        return cache.scratch(key)
    path = Path(tempfile.gettempdir()) / f"memotune-work-{getpass.getuser()}" / key[:32]
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_deepest(
    pipeline: Pipeline, plans: list[StagePlan], cache: StageCache | None
) -> tuple[int, Any, list[StageRecord]]:
    """Load the deepest cached stage output.

    Returns how many leading stages are covered, the loaded output (the
    pipeline's inputs when none is), and hit records for the covered stages.
    """
    if cache is not None:
        for plan in reversed(plans):
            if not plan.stage.cache:
                continue
            hit = cache.get(plan.key)
            if hit is not None:
                return plan.index + 1, _unwrap_payload(hit.value), hit_records(pipeline, plans, hit)
    return 0, pipeline.inputs, []


def load_own(
    pipeline: Pipeline, plans: list[StagePlan], plan: StagePlan, cache: StageCache | None
) -> tuple[Any, StageRecord] | None:
    """The output of ``plan``'s stage if it is cached, with its hit record; else ``None``."""
    if cache is None or not plan.stage.cache:
        return None
    hit = cache.get(plan.key)
    if hit is None:
        return None
    return _unwrap_payload(hit.value), hit_records(pipeline, plans, hit)[-1]


def hit_records(pipeline: Pipeline, plans: list[StagePlan], hit: Hit) -> list[StageRecord]:
    """Records for stages ``0..depth`` served by the cached entry ``hit``."""
    payload = hit.value if isinstance(hit.value, dict) else {}
    depth = hit.info.depth
    records = []
    for link, plan in zip(hit.info.chain, plans[: depth + 1], strict=True):
        loaded = plan.index == depth
        record = StageRecord(
            stage=plan.stage.name,
            key=plan.key,
            hit=True,
            loaded=loaded,
            compute_seconds=float(link["compute_seconds"]),
            cost=float(link["cost"]),
            load_seconds=hit.load_seconds if loaded else 0.0,
            metrics=dict(payload.get("metrics", {})) if loaded else {},
            history=list(payload.get("history", [])) if loaded else [],
            node=node_name() if loaded else None,
        )
        record.charged = pipeline.charge(record)
        records.append(record)
    return records


def execute_stage(
    pipeline: Pipeline,
    plan: StagePlan,
    upstream: Any,
    cache: StageCache | None,
    chain: list[dict[str, Any]],
    *,
    trial_id: int | None = None,
    judge: Judge | None = None,
) -> tuple[Any, StageRecord]:
    """Run one stage on ``upstream`` and store its output.

    ``chain`` holds the :func:`chain_link` of every stage before this one;
    ``judge`` (the study's pruner) answers the stage's ``context.should_prune()``.

    Raises :class:`StageFailed` when the stage function raises (or is pruned).
    """
    stage = plan.stage
    kwargs = dict(plan.params)
    context = None
    resumed = checkpoints.nearest(cache, plan) if stage.fidelity else None
    base = checkpoints.base_of(plan) if resumed is None else None
    found = resumed or (checkpoints.nearest(cache, base) if base is not None else None)
    continued = {"resumed_from": found.checkpoint.step, "resumed_cost": found.cost} if found else {}
    if stage.takes_context:
        context = StageContext(stage.name, plan.key, trial_id, str(workdir_for(cache, plan.key)))
        if stage.fidelity:
            context.history = list(found.history) if found else []
            context.resume = resumed.checkpoint if resumed else None
            context.keep = checkpoints.keeper(cache, plan, chain, context.history, found)
        if base is not None:
            context.base = found.checkpoint if found else None
            context.keep_base = checkpoints.keeper(cache, base, chain, context.history, found)
        context.judge = judge
        kwargs["context"] = context
    started = time.perf_counter()
    try:
        output = stage.fn(upstream, **kwargs)
    except Exception as error:
        seconds = time.perf_counter() - started
        history = list(context.history) if context else []
        status = PRUNED if isinstance(error, TrialPruned) else FAILED
        if status == PRUNED:
            reason = f"pruned after step {history[-1]['step']:g}" if history else "pruned"
        else:
            reason = f"{type(error).__name__}: {error}"
        record = StageRecord(
            stage=stage.name,
            key=plan.key,
            compute_seconds=seconds,
            cost=seconds,
            error=reason,
            history=history,
            **continued,
        )
        record.charged = pipeline.charge(record)
        raise StageFailed(record, _user_traceback(error), status=status) from error
    seconds = time.perf_counter() - started
    value, cost, metrics, history = _unwrap_output(output)
    record = StageRecord(
        stage=stage.name,
        key=plan.key,
        compute_seconds=seconds,
        cost=seconds if cost is None else float(cost),
        metrics=metrics,
        history=(context.history if context else []) + history,
        node=node_name(),
        **continued,
    )
    record.charged = pipeline.charge(record)
    if cache is not None and stage.cache:
        _store(cache, plan, value, record, chain + [chain_link(plan, record)])
    return value, record


def node_name() -> str:
    """Where this process runs: the host name, and inside a Ray worker the node's address
    and the start of its id (two nodes may share a host)."""
    host = os.uname().nodename
    ray = sys.modules.get("ray")  # never import Ray just to ask
    if ray is not None and ray.is_initialized():
        address = ray.util.get_node_ip_address()
        return f"{host} {address} ({ray.get_runtime_context().get_node_id()[:8]})"
    return host


def chain_link(plan: StagePlan, record: StageRecord) -> dict[str, Any]:
    """How a cache entry remembers one stage of its chain: its settings and what it cost
    from scratch (a continued stage: its checkpoint's cost too)."""
    return {
        "stage": plan.stage.name,
        "version": plan.stage.version,
        "params": plan.params,
        "cost": record.cost + record.resumed_cost,
        "compute_seconds": record.compute_seconds + record.resumed_cost,
    }


def _store(
    cache: StageCache,
    plan: StagePlan,
    value: Any,
    record: StageRecord,
    chain: list[dict[str, Any]],
) -> None:
    payload = {
        "tag": _PAYLOAD_TAG,
        "value": value,
        "metrics": record.metrics,
        "history": record.history,
    }
    try:
        cache.put(
            plan.key,
            payload,
            stage=plan.stage.name,
            version=plan.stage.version,
            params=plan.params,
            parent_key=plan.parent_key,
            lineage=plan.lineage,
            chain=chain,
            cost=chain[-1]["cost"],
            compute_seconds=chain[-1]["compute_seconds"],
        )
    except Exception as error:  # noqa: BLE001 - an unstorable output must not lose the trial
        warnings.warn(
            f"the output of stage '{plan.stage.name}' could not be cached "
            f"({type(error).__name__}: {error}); the trial goes on without it",
            stacklevel=2,
        )


def _unwrap_output(output: Any) -> tuple[Any, float | None, dict[str, float], list[dict]]:
    if isinstance(output, Output):
        metrics = {str(k): float(v) for k, v in output.metrics.items()}
        return output.value, output.cost, metrics, list(output.history)
    return output, None, {}, []


def _unwrap_payload(payload: Any) -> Any:
    if isinstance(payload, dict) and payload.get("tag") == _PAYLOAD_TAG:
        return payload["value"]
    return payload
