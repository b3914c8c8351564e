"""A study's budget, and what each trial charged it: the one owner of budget accounting.

:class:`Budget` is what a study may spend and has spent (:meth:`Budget.for_pipeline`
builds it for a pipeline; :meth:`Budget.from_settings` for a stored study).
:class:`ProposalCharge` is what choosing one trial's configuration took: the
tuner's seconds, the part of them charged to the budget, and the tuner's phase.
The study stamps it into each trial's ``info`` (:meth:`ProposalCharge.to_info`);
everything that reads a trial's tuner time or phase reads it back with
:meth:`ProposalCharge.from_record`, never by the ``info`` keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from memotune.pipelines import Pipeline, TrialRecord

COST = "cost"
TRIALS = "trials"

#: The key of ``Proposal.info`` where a tuner names the phase it proposed in.
PHASE = "phase"
#: The phase of a tuner's warm-up proposals (the design before its model takes over).
WARMUP = "warmup"
#: The phase recorded for a proposal whose tuner named none.
ASK = "ask"

_SECONDS = "tuner_seconds"
_CHARGED = "tuner_charged"


@dataclass(frozen=True)
class ProposalCharge:
    """What choosing one trial's configuration took.

    ``seconds`` is the tuner's time (``ask``), ``charged`` the part of it charged
    to the budget (all of it where the pipeline's cost unit is seconds, none
    where stages report other cost units), ``phase`` the tuner's phase
    (``"warmup"``, ``"bo"``, ``"random"``, ``"tpe"``, …; None for a trial that
    no tuner proposed).
    """

    seconds: float = 0.0
    charged: float = 0.0
    phase: str | None = None

    @property
    def proposed(self) -> bool:
        """A tuner proposed this trial (and the study timed it)."""
        return self.phase is not None

    @property
    def warmup(self) -> bool:
        return self.phase == WARMUP

    def to_info(self) -> dict[str, Any]:
        """The trial ``info`` entries that record this charge."""
        info: dict[str, Any] = {_SECONDS: self.seconds, _CHARGED: self.charged}
        if self.phase is not None:
            info[PHASE] = self.phase
        return info

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ProposalCharge:
        phase = info.get(PHASE)
        return cls(
            seconds=float(info.get(_SECONDS) or 0.0),
            charged=float(info.get(_CHARGED) or 0.0),
            phase=None if phase is None else str(phase),
        )

    @classmethod
    def from_record(cls, record: TrialRecord) -> ProposalCharge:
        return cls.from_info(record.info)


def trial_cost(record: TrialRecord) -> float:
    """What one trial added to a cost budget: its stages' charges plus its proposal's."""
    return record.charged + ProposalCharge.from_record(record).charged


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
            what = "trials must be at least 1" if self.kind == TRIALS else "budget must be positive"
            raise ValueError(f"{what}, got {self.total:g}")

    @classmethod
    def for_pipeline(
        cls, pipeline: Pipeline, *, budget: float | None = None, trials: int | None = None
    ) -> Budget:
        """A fresh budget for tuning ``pipeline``: ``budget`` in its cost unit or a count of
        ``trials`` (one of the two). The tuner's seconds are charged where the pipeline's
        cost unit is seconds, and reported beside the budget where it is not."""
        if (budget is None) == (trials is None):
            raise ValueError("give either budget= (in cost units) or trials= (a count), not both")
        charge_tuner = pipeline.cost_unit == "seconds"
        if budget is not None:
            return cls(COST, float(budget), charge_tuner=charge_tuner)
        return cls(TRIALS, float(trials), charge_tuner=charge_tuner)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Budget:
        """A fresh budget as a stored study's settings describe it."""
        return cls(
            settings.get("budget_kind", TRIALS),
            float(settings.get("budget_total", 1.0)),
            charge_tuner=settings.get("cost_unit", "seconds") == "seconds",
        )

    def fresh(self) -> Budget:
        """The same budget with nothing spent."""
        return dataclasses.replace(
            self, compute=0.0, loads=0.0, tuner=0.0, tuner_seconds=0.0, saved=0.0, trials=0
        )

    @property
    def spent(self) -> float:
        """Spent so far, in the budget's own unit (cost units or trials)."""
        if self.kind == TRIALS:
            return float(self.trials)
        return self.charged

    @property
    def charged(self) -> float:
        """Everything charged so far in cost units (stage compute, cache loads, the tuner's
        charged seconds), whatever the budget's kind."""
        return self.compute + self.loads + self.tuner

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - self.spent)

    def exhausted(self, running: int = 0) -> bool:
        """No more trials may start (``running`` trials are already on their way)."""
        if self.kind == TRIALS:
            return self.trials + running >= self.total
        return self.spent >= self.total

    def proposal(self, seconds: float, phase: str | None) -> ProposalCharge:
        """The charge for a proposal that took the tuner ``seconds``."""
        return ProposalCharge(seconds, seconds if self.charge_tuner else 0.0, phase or ASK)

    def charge(self, record: TrialRecord) -> None:
        """Account for a finished trial: its stages and its proposal's charge."""
        self.trials += 1
        for stage in record.stages:
            if stage.hit:
                self.loads += stage.charged
                self.saved += max(0.0, stage.cost - stage.charged)
            else:
                self.compute += stage.charged
        proposal = ProposalCharge.from_record(record)
        self.tuner_seconds += proposal.seconds
        self.tuner += proposal.charged

    def charge_all(self, records: Iterable[TrialRecord]) -> list[float]:
        """Charge ``records`` in order; the budget spent after each."""
        spent = []
        for record in records:
            self.charge(record)
            spent.append(self.spent)
        return spent

    def trial_cost(self, record: TrialRecord) -> float:
        """What one trial added to ``spent`` (cost budgets), tuner time included."""
        return trial_cost(record)

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
