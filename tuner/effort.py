"""How much thinking a proposal may cost, from what trials cost.

A tuner whose seconds are charged to the budget should spend on choosing
trials a small share of what the trials themselves cost. ``Effort`` keeps an
account: every trial's charged cost (or the tuner's floor under it, see
:meth:`Effort.observe_trial`) earns ``target_share / (1 − target_share)`` of
it as thinking time, every proposal spends its seconds, and whatever the
trials earned, the account never holds more than would bring the thinking to
``max_share`` of what was truly charged. With that account:

- **refits**: re-optimizing the GPs' hyperparameters (most of a proposal's
  seconds) happens only when the account can pay for one; in between, the
  models take the new data with the hyperparameters they have, which costs
  milliseconds;
- **batches**: when even a lean proposal without a refit costs more than a
  trial earns, one optimization proposes a batch of trials, enough to bring
  the share back to the target;
- **breadth**: when the account cannot pay for a usual proposal, the
  acquisition is searched leanly (fewer raw samples, one polished start, few
  steps) before resorting to batches; when it holds many proposals' worth,
  widely.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

#: Recent trials and proposals that the estimates average over.
WINDOW = 10

#: Acquisition search breadths (see :meth:`Effort.breadth`).
LEAN, USUAL, WIDE = "lean", "usual", "wide"


@dataclass
class Effort:
    """The tuner's account for thinking: ``target_share`` of the charged budget."""

    target_share: float = 0.05
    max_batch: int = 16
    #: The share of the charged budget the thinking may never exceed: a trial's floor
    #: earns at the target, but its true charge is what the share is measured on.
    max_share: float = 0.08
    earned: float = 0.0
    spent: float = 0.0
    charged: float = 0.0  # the trials' true charge, which bounds the account
    trial_costs: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    plain_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    refit_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    @property
    def rate(self) -> float:
        """Thinking seconds earned per unit of trial cost."""
        return self.target_share / (1 - self.target_share)

    def observe_trial(self, charged: float, floor: float = 0.0) -> None:
        """A trial charged ``charged``; it earns as if it cost at least ``floor`` (so
        trials made cheap by the cache still buy thinking), up to ``max_share``."""
        charged = max(0.0, charged)
        earning = max(charged, floor)
        self.trial_costs.append(earning)
        self.earned += self.rate * earning
        self.charged += charged

    def observe_proposal(self, seconds: float, refitted: bool) -> None:
        """A proposal (one optimization) took ``seconds``, with a refit or without."""
        self.spent += seconds
        (self.refit_seconds if refitted else self.plain_seconds).append(seconds)

    @property
    def balance(self) -> float:
        """Thinking seconds earned and not yet spent (negative: overspent), at most what
        would bring the thinking to ``max_share`` of the trials' true charge."""
        ceiling = self.max_share / (1 - self.max_share) * self.charged
        return min(self.earned, ceiling) - self.spent

    def may_refit(self, charged: bool) -> bool:
        """Whether the account pays for a proposal with a refit (always where the
        tuner's time is free, and until a refit's cost is known)."""
        if not charged or not self.refit_seconds:
            return True
        return self.balance >= statistics.median(self.refit_seconds)

    def batch_size(self, charged: bool) -> int:
        """Trials to propose from the next optimization (1 where the tuner's time is free):
        enough to earn what it will cost and what the account owes (a refit that it
        could not pay for is paid back by the trials of the batches after it)."""
        if not charged or not self.trial_costs or not self.plain_seconds:
            return 1
        per_trial = self.rate * statistics.median(self.trial_costs)
        owed = statistics.median(self.plain_seconds) + max(0.0, -self.balance)
        return max(1, min(self.max_batch, math.ceil(owed / max(per_trial, 1e-9))))

    def breadth(self, charged: bool) -> str:
        """How widely to search the acquisition: ``"wide"`` when the account holds many
        proposals' worth, ``"lean"`` when it cannot pay for a usual one, else
        ``"usual"`` (always where the tuner's time is free, so a benchmark in cost
        units runs at the usual breadth)."""
        if not charged or not self.plain_seconds:
            return USUAL
        if self.refit_seconds and self.balance > 8 * max(self.refit_seconds):
            return WIDE
        if self.balance < statistics.median(self.plain_seconds):
            return LEAN
        return USUAL
