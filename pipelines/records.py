"""What one trial did: per-stage records and the trial record."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

COMPLETED = "completed"
FAILED = "failed"
#: stopped early by the study's pruner: its checkpoints stay cached, it has no objective
PRUNED = "pruned"


@dataclass
class StageRecord:
    """One stage of one trial.

    ``cost`` and ``compute_seconds`` are the stage's *true* compute figures
    even on a hit (the cache entry carries them); ``load_seconds`` is what
    this trial spent loading it and ``charged`` what it charged the budget.
    On a hit only the deepest cached stage is loaded (``loaded``); the stages
    before it are skipped, also hits. A ``shared`` stage is a hit on work that
    another running trial was computing: this trial waited for it instead.
    """

    stage: str
    key: str
    hit: bool = False
    loaded: bool = False
    shared: bool = False
    compute_seconds: float = 0.0
    cost: float = 0.0
    load_seconds: float = 0.0
    charged: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    node: str | None = None
    #: a stage with a fidelity that went on from a cached checkpoint: its step, and what
    #: reaching it had cost (``cost`` and ``compute_seconds`` count this run only)
    resumed_from: int | None = None
    resumed_cost: float = 0.0


@dataclass
class TrialRecord:
    """The outcome of running one configuration through a pipeline."""

    config: dict[str, dict[str, Any]]
    status: str
    objective: float | None
    metrics: dict[str, float]
    stages: list[StageRecord]
    error: str | None = None
    traceback: str | None = None
    trial_id: int | None = None
    started: float = 0.0
    finished: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    #: a pruned trial's likely objective, as the study's pruner forecasts it from what
    #: the trial reported before it stopped (``None``: no forecast)
    forecast: float | None = None

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def pruned(self) -> bool:
        return self.status == PRUNED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def charged(self) -> float:
        """What running this trial's stages charged the budget (the tuner's time apart)."""
        return sum(s.charged for s in self.stages)

    @property
    def failed_stage(self) -> str | None:
        """The stage that raised, if one did."""
        return next((s.stage for s in self.stages if s.error is not None), None)

    @property
    def failure_reason(self) -> str:
        """What was raised, in one line (without the failed stage's name)."""
        lines = (self.error or "").strip().splitlines()
        stage = self.failed_stage
        message = lines[0] if lines else ""
        return message if stage is None else message.removeprefix(f"stage {stage!r} failed: ")

    @property
    def failure(self) -> str:
        """Why the trial failed, in one line: where, then what was raised."""
        stage = self.failed_stage
        where = "" if stage is None else f"in stage '{stage}': "
        return where + self.failure_reason

    @property
    def cache_hits(self) -> int:
        return sum(s.hit for s in self.stages)

    @property
    def reused_depth(self) -> int:
        """How many leading stages came from the cache."""
        depth = 0
        for s in self.stages:
            if not s.hit:
                break
            depth += 1
        return depth

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        data = dict(data)
        data["stages"] = [StageRecord(**s) for s in data.get("stages", [])]
        return cls(**data)


def improves(value: float, best: float | None, maximize: bool) -> bool:
    """``value`` is strictly better than ``best`` (None: nothing yet) in the direction."""
    return best is None or (value > best if maximize else value < best)


def best_trial(records: Iterable[TrialRecord], maximize: bool) -> TrialRecord | None:
    """The incumbent: the completed trial with the best objective in the direction
    (on a tie, the one listed first); None while no trial has completed."""
    best: TrialRecord | None = None
    for record in records:
        if record.completed and record.objective is not None:
            if improves(record.objective, None if best is None else best.objective, maximize):
                best = record
    return best
