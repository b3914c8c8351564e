"""How much thinking a proposal may cost, from what trials cost.

A tuner whose seconds are charged to the budget should spend on choosing a
trial a small share of what the trial itself costs. ``Effort`` watches both:
the charged cost of recent trials and the seconds of recent full proposals
(model fit plus acquisition optimization). When one proposal costs more than
its share of a trial, the next optimization proposes a batch from the same
fit, enough trials to bring the tuner's share back to the target; when trials
are dear, proposals screen and polish more candidates.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

#: Recent trials and proposals that the policy averages over.
WINDOW = 10


@dataclass
class Effort:
    """The tuner's budget for thinking: ``target_share`` of the charged budget."""

    target_share: float = 0.05
    max_batch: int = 16
    trial_costs: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    proposal_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def observe_trial(self, charged: float) -> None:
        self.trial_costs.append(max(0.0, charged))

    def observe_proposal(self, seconds: float) -> None:
        self.proposal_seconds.append(seconds)

    @property
    def allowed_seconds(self) -> float | None:
        """What one trial's proposal may cost to keep the share on target (None: unknown)."""
        if not self.trial_costs:
            return None
        trial = statistics.median(self.trial_costs)
        return self.target_share / (1 - self.target_share) * trial

    def batch_size(self, charged: bool) -> int:
        """Trials to propose from the next optimization (1 where the tuner's time is free)."""
        allowed = self.allowed_seconds
        if not charged or allowed is None or not self.proposal_seconds:
            return 1
        needed = statistics.median(self.proposal_seconds) / max(allowed, 1e-9)
        return max(1, min(self.max_batch, math.ceil(needed)))

    def thorough(self, charged: bool) -> bool:
        """Trials are dear next to a proposal: search harder (only where it is charged,
        so a benchmark in cost units runs at the default effort)."""
        allowed = self.allowed_seconds
        if not charged or allowed is None or not self.proposal_seconds:
            return False
        return allowed > 8 * max(self.proposal_seconds)
