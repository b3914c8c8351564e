"""A study's budget: a total in cost units or a trial count, and how it was spent."""

from __future__ import annotations

from dataclasses import dataclass

from memotune.pipelines import TrialRecord

COST = "cost"
TRIALS = "trials"


@dataclass
class Budget:
    """What a study may spend, and what it has spent so far.

    In cost units, stage compute, cache loads and (when ``charge_tuner``) the
    tuner's own seconds are all charged. A trial count charges one per trial.
    The study stops asking for trials once the budget is spent; the trial
    that crosses the line still finishes.
    """

    kind: str
    total: float
    charge_tuner: bool = True
    compute: float = 0.0
    loads: float = 0.0
    tuner: float = 0.0
    tuner_seconds: float = 0.0
    saved: float = 0.0
    trials: int = 0

    def __post_init__(self) -> None:
        if self.kind not in (COST, TRIALS):
            raise ValueError(f"budget kind must be {COST!r} or {TRIALS!r}, got {self.kind!r}")
        if not self.total > 0:
            raise ValueError(f"the budget must be positive, got {self.total}")

    @property
    def spent(self) -> float:
        """Spent so far, in the budget's own unit (cost units or trials)."""
        if self.kind == TRIALS:
            return float(self.trials)
        return self.compute + self.loads + self.tuner

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - self.spent)

    def exhausted(self, running: int = 0) -> bool:
        """No more trials may start (``running`` trials are already on their way)."""
        if self.kind == TRIALS:
            return self.trials + running >= self.total
        return self.spent >= self.total

    def charge(self, record: TrialRecord) -> None:
        """Account for a finished trial (its ``info`` carries the tuner's seconds)."""
        self.trials += 1
        for stage in record.stages:
            if stage.hit:
                self.loads += stage.charged
                self.saved += max(0.0, stage.cost - stage.charged)
            else:
                self.compute += stage.charged
        tuner_seconds = float(record.info.get("tuner_seconds", 0.0))
        self.tuner_seconds += tuner_seconds
        if self.charge_tuner:
            self.tuner += tuner_seconds

    def trial_cost(self, record: TrialRecord) -> float:
        """What one trial added to ``spent`` (cost budgets), tuner time included."""
        tuner = float(record.info.get("tuner_seconds", 0.0)) if self.charge_tuner else 0.0
        return record.charged + tuner

    def summary(self) -> dict[str, float]:
        return {
            "kind": self.kind,
            "total": self.total,
            "spent": self.spent,
            "compute": self.compute,
            "cache_loads": self.loads,
            "tuner": self.tuner,
            "tuner_seconds": self.tuner_seconds,
            "saved_by_cache": self.saved,
            "trials": self.trials,
        }
