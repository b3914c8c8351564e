"""Stopping unpromising training early: the study's pruner.

A stage with a fidelity reports a metric as it trains (``context.report``)
and asks ``context.should_prune()`` after each report. The pruner answers
from what every trial of the study reported at the same step. A pruned
trial ends as ``pruned``: it charged the budget for the steps it ran, and
its checkpoints stay in the cache, so a later trial with the same settings
and more steps continues it instead of starting over.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import scipy.stats

from memotune.pipelines import Pipeline, TrialRecord
from memotune.pipelines.stage import Judge, Stage

#: ``memotune bench`` runs a tuner listed as ``NAME+asha`` as NAME with its ``--prune`` pruner.
PRUNED_SUFFIX = "+asha"


class Pruner(Judge, Protocol):
    """What a study's pruner does: answer a stage's ``context.should_prune()`` (a
    :class:`~memotune.pipelines.stage.Judge`), and learn the reports of finished trials
    (the study tells it every one, restored ones too)."""

    def observe(self, record: TrialRecord) -> None: ...

    def for_pipeline(self, pipeline: Pipeline) -> Pruner:
        """The pruner as it applies to ``pipeline`` (the study calls it once, at its start)."""
        ...

    def forecast(self, record: TrialRecord) -> float | None:
        """The objective a pruned trial would likely have reached, from what it reported
        before it stopped and what the finished trials had reported there (``None``
        where the pruner cannot tell). The study tells it to the tuner in place of an
        objective."""
        ...


@dataclass
class ASHA:
    """Asynchronous successive halving (Li et al., "A System for Massively Parallel
    Hyperparameter Tuning", MLSys 2020), as Ray Tune's ASHA scheduler and Optuna's
    ``SuccessiveHalvingPruner`` apply it.

    Rungs lie at ``min_step · reduction^k`` steps. A trial that reaches a rung goes
    on only while its ``metric`` there is among the best ``1/reduction`` of all
    values reported at that rung so far (the best one always goes on); otherwise
    it is pruned. ``mode`` is ``"min"`` or ``"max"``; ``stage`` limits the rule to
    one stage's reports (default: any stage that reports ``metric``). ``min_step``
    defaults to the lower bound of the pruned stages' fidelity: no trial is stopped
    before the fewest steps the search space would train anyway.

    A rung stops trials only once it has shown that its metric ranks them as their
    objective does: ``min_evidence`` finished trials reported there, and the
    Spearman correlation of what they reported with their objective (signed so
    that agreeing counts as positive) is at least ``min_agreement``. An
    intermediate metric that does not predict the objective (a later stage decides
    it, or the metric is not comparable across configurations) is no reason to
    stop a trial; nor is one not yet tested, so the first trials at each rung (a
    tuner's warm-up design among them) run to the end and teach the tuner their
    true objective. ``min_evidence=0`` is ASHA's own rule: every rung stops trials
    from the start.

    A trusted rung keeps more than ASHA's best ``1/reduction`` where it ranks
    trials only roughly: the least share of the best (at least ``1/reduction``)
    that would have kept ``min_recall`` of the finished trials whose objective was
    among the best ``1/reduction`` (:meth:`keep_share`). A rung that ranks as the
    objective does keeps ASHA's share; one that let a good trial fall to the
    bottom at that rung prunes little.
    """

    metric: str
    mode: str = "min"
    min_step: int | None = None
    reduction: int = 3
    stage: str | None = None
    min_evidence: int = 8
    min_agreement: float = 0.3
    min_recall: float = 0.9
    #: whether the pipeline maximizes its objective (``for_pipeline`` sets it)
    maximize: bool = False
    #: rung step → trial id → the metric it reported there
    rungs: dict[int, dict[int, float]] = field(default_factory=dict)
    #: trial id → the objective of a finished trial
    outcomes: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"ASHA mode must be 'min' or 'max', got {self.mode!r}")
        if (self.min_step is not None and self.min_step < 1) or self.reduction < 2:
            raise ValueError("ASHA needs min_step >= 1 and reduction >= 2")
        if self.min_evidence < 0:
            raise ValueError("ASHA needs min_evidence >= 0")
        if not 0 < self.min_recall <= 1:
            raise ValueError("ASHA needs 0 < min_recall <= 1")

    def for_pipeline(self, pipeline: Pipeline) -> ASHA:
        """This rule for ``pipeline``'s objective, with its ``min_step`` set: as given, or
        the smallest lower bound of the fidelities of the stages it prunes."""
        lows = [int(s.space[s.fidelity].low) for s in self.stages_of(pipeline)]
        min_step = self.min_step if self.min_step is not None else max(1, min(lows, default=1))
        return dataclasses.replace(self, min_step=min_step, maximize=pipeline.maximize)

    def stages_of(self, pipeline: Pipeline) -> list[Stage]:
        """The stages of ``pipeline`` this rule prunes: those with a fidelity (``stage``'s
        alone, where it names one)."""
        return [
            s for s in pipeline.stages if s.fidelity is not None and self.stage in (None, s.name)
        ]

    def should_prune(
        self, trial_id: int | None, stage: str, step: int, metrics: dict[str, float]
    ) -> bool:
        """Record the report and say whether the trial stops here."""
        value = metrics.get(self.metric)
        if not self._applies(stage, step, value) or trial_id is None:
            return False
        rung = self.rungs.setdefault(step, {})
        rung[trial_id] = float(value)
        if not self.trusted(step):
            return False
        ranked = sorted(rung.values(), reverse=self.mode == "max")
        share = self.keep_share(step)
        kept = ranked[max(1, math.floor(len(ranked) * share + 1e-9)) - 1]  # the worst kept
        return value > kept if self.mode == "min" else value < kept

    def observe(self, record: TrialRecord) -> None:
        """Take a finished trial's reports into the rungs, and its objective (so a resumed
        study keeps both)."""
        if record.trial_id is None:
            return
        for step, value in self._rung_reports(record):
            self.rungs.setdefault(step, {}).setdefault(record.trial_id, value)
        if record.completed and record.objective is not None and math.isfinite(record.objective):
            self.outcomes[record.trial_id] = float(record.objective)

    def forecast(self, record: TrialRecord) -> float | None:
        """The objective that the trial's metric at its last rung predicts: the robust
        line (Theil–Sen) through the finished trials' metric there and their objective,
        kept within the range of those objectives. ``None`` before ``min_evidence``
        finished trials reported at that rung, or while they all reported the same."""
        last = max(self._rung_reports(record), default=None)
        if last is None:
            return None
        step, value = last
        evidence = self._evidence(step)
        if len(evidence) < max(2, self.min_evidence):  # a line needs two points
            return None
        metric, objective = zip(*evidence, strict=True)
        if len(set(metric)) < 2:  # no line through one point: the metric tells nothing
            return None
        slope, intercept, *_ = scipy.stats.theilslopes(objective, metric)
        line = intercept + slope * value  # within the objectives seen: no extrapolating
        return float(min(max(line, min(objective)), max(objective)))

    def trusted(self, step: int) -> bool:
        """Whether rung ``step`` may stop trials: always with ``min_evidence=0``, else
        once it has ranked enough finished trials as their objective did."""
        if not self.min_evidence:
            return True
        rho = self.agreement(step)
        return rho is not None and rho >= self.min_agreement

    def keep_share(self, step: int) -> float:
        """The share of the trials reported at rung ``step`` that go on: ASHA's
        ``1/reduction`` (always with ``min_evidence=0``), or more, as much as it takes
        to have kept ``min_recall`` of the best ``1/reduction`` finished trials by
        objective, judged by where each stood at the rung among the finished ones."""
        least = 1 / self.reduction
        evidence = self._evidence(step)
        if not self.min_evidence or len(evidence) < max(3, self.min_evidence):
            return least
        n = len(evidence)
        sign = 1.0 if self.mode == "min" else -1.0
        by_metric = sorted(range(n), key=lambda i: sign * evidence[i][0])
        standing = {i: (rank + 1) / n for rank, i in enumerate(by_metric)}  # 1/n: the best
        direction = -1.0 if self.maximize else 1.0
        best = sorted(range(n), key=lambda i: direction * evidence[i][1])[
            : max(1, n // self.reduction)
        ]
        needed = sorted(standing[i] for i in best)[math.ceil(self.min_recall * len(best)) - 1]
        return max(least, needed)

    def agreement(self, step: int) -> float | None:
        """How well the metric at rung ``step`` has ranked finished trials as their
        objective did: Spearman's correlation, positive where they agree; ``None``
        before ``min_evidence`` (and at least 3) finished trials reported there, or
        while all their metrics or all their objectives are alike."""
        evidence = self._evidence(step)
        if len(evidence) < max(3, self.min_evidence):
            return None
        metric, objective = zip(*evidence, strict=True)
        rho = float(scipy.stats.spearmanr(metric, objective).statistic)
        if not math.isfinite(rho):
            return None
        return rho if (self.mode == "max") == self.maximize else -rho

    def _rung_reports(self, record: TrialRecord) -> Iterator[tuple[int, float]]:
        """The (step, metric) pairs ``record`` reported at this rule's rungs."""
        for stage in record.stages:
            for entry in stage.history:
                step, value = int(entry.get("step", -1)), entry.get(self.metric)
                if self._applies(stage.stage, step, value):
                    yield step, float(value)

    def _evidence(self, step: int) -> list[tuple[float, float]]:
        """(metric at rung ``step``, objective) of every finished trial that reported there."""
        rung = self.rungs.get(step, {})
        return [(rung[t], objective) for t, objective in self.outcomes.items() if t in rung]

    def decides_at(self, stage: str, step: int) -> bool:
        """Whether ``step`` is a rung of this rule for ``stage``."""
        if self.min_step is None:
            raise RuntimeError("ASHA.min_step is unset: use ASHA.for_pipeline(pipeline) first")
        if step < self.min_step or self.stage not in (None, stage):
            return False
        rung = math.log(step / self.min_step, self.reduction)
        return abs(rung - round(rung)) < 1e-9

    def _applies(self, stage: str, step: int, value: float | None) -> bool:
        return value is not None and math.isfinite(value) and self.decides_at(stage, step)
