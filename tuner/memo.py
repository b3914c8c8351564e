"""An experimental memoization-aware tuner: EEIPU's memoization, a Gittins-index
acquisition, a noise-aware model, and thinking sized to what trials cost.

Not the default: on the four real benchmark pipelines (docs/benchmarks.md) it
keeps the tuner's share of the budget at 5–8% but reaches a better mean test
score than EEIPU on one of them only.

What it does beyond the paper's EEIPU (kept as ``eeipu``), and why:

- **Acquisition.** EI per unit cost, cooled or not, prefers a cheap suffix
  tweak of a cached prefix to a new run of the dear early stages almost
  always (a cached trial is ten times cheaper, so it wins by ten times): on a
  pipeline whose first stage decides the result, EEIPU stayed on the first
  good prefix it found. The Pandora's box Gittins index (Xie et al., NeurIPS
  2024; :class:`~.acquisition.GittinsIndex`) values a candidate at the
  threshold where opening it is worth its cost; cost enters through a
  logarithm, so a cached prefix is reused when the posterior finds it as
  promising, not merely because it is cheap. And cheapness earns no credit
  below ``min_cost`` of a typical full trial (default: the whole of one):
  the index assumes independent boxes, but the cheap suffix variations of
  one cached prefix are strongly correlated, so each teaches less than its
  price suggests. λ (objective standard deviations per typical trial)
  starts at ``lmbda`` and halves whenever the best index falls below the
  incumbent (PBGI-D), so the search narrows as it learns rather than on a
  fixed schedule.
- **Noise.** The GP fits a noise level; the incumbent is the best posterior
  mean at an observed configuration, not the luckiest validation draw; a
  candidate indistinguishable from an observed or running configuration
  within that noise (``Var[f(x) − f(x')] = 2(1 − ρ) < σ²_noise`` in the
  GP's standardized units) is not proposed.
- **Effort.** Where the tuner's seconds are charged, :class:`~.effort.Effort`
  keeps them near ``target_share`` of the budget: cheap trials get batches
  of diverse proposals from one fit; dear trials get a wider search.
"""

from __future__ import annotations

import statistics
import time

import torch

from memotune.pipelines import TrialRecord

from .acquisition import GittinsIndex
from .base import Config, Proposal
from .bayes import BO
from .budget import PHASE, Budget
from .cached_posterior import CachedPosteriorGP
from .eeipu import EEIPU
from .effort import Effort
from .optimize import AcquisitionFactory, Candidate

#: Proposals of one batch lie at least this far apart in the unit cube.
BATCH_MIN_DISTANCE = 0.1


class MemoTuner(EEIPU):
    name = "memo"

    def __init__(
        self,
        pipeline,
        *,
        lmbda: float = 0.1,
        decay: float = 2.0,
        min_cost: float = 1.0,
        target_share: float = 0.05,
        max_batch: int = 64,
        **options,
    ) -> None:
        super().__init__(pipeline, **options)
        self.lmbda = lmbda
        self.decay = decay
        self.min_cost = min_cost
        self.effort = Effort(target_share=target_share, max_batch=max_batch)
        self._base_search = (self.raw_samples, self.polish, self.maxiter)

    def _propose(self, pending: list[Config], budget: Budget) -> Proposal:
        started = time.perf_counter()
        thorough = self.effort.thorough(budget.charge_tuner)
        raw, polish, maxiter = self._base_search
        self.raw_samples, self.polish, self.maxiter = (
            (2 * raw, polish + 2, 2 * maxiter) if thorough else (raw, polish, maxiter)
        )
        self._batch = self.effort.batch_size(budget.charge_tuner)
        proposal = super()._propose(pending, budget)
        if proposal.info.get(PHASE) == BO and not proposal.info.get("queued"):
            self.effort.observe_proposal(time.perf_counter() - started)
            proposal.info["batch"] = 1 + len(self._queue)
        return proposal

    def _observe(self, record: TrialRecord) -> None:
        super()._observe(record)
        self.effort.observe_trial(record.charged)
        self.lmbda = min(self.lmbda, float(record.info.get("lambda", self.lmbda)))

    def _acquisition(
        self, model: CachedPosteriorGP, X: torch.Tensor, Y: torch.Tensor, budget: Budget
    ) -> tuple[AcquisitionFactory, dict]:
        with torch.no_grad():
            incumbent = float(model.mean_and_variance(X)[0].max())
        scale = float(Y.std()) if len(Y) > 1 else 1.0
        lmbda = self.lmbda * max(scale, 1e-9)
        cost_scale = self._typical_trial_cost()

        def make_acquisition(depth: torch.Tensor, cached: torch.Tensor) -> GittinsIndex:
            return GittinsIndex(
                model, lmbda, self.costs, cost_scale, depth, cached, min_cost=self.min_cost
            )

        self._incumbent = incumbent
        return make_acquisition, {"lambda": self.lmbda, "incumbent": incumbent}

    def _choose(
        self,
        candidates: list[Candidate],
        pending: list[Config],
        model: CachedPosteriorGP,
        budget: Budget,
    ) -> list[tuple[Candidate, Config]]:
        """Up to a batch of new configurations, best first: none indistinguishable from
        an observed or running one within the fitted noise, none too close to another."""
        if candidates and candidates[0].value < self._incumbent:
            self.lmbda /= self.decay  # PBGI-D: nothing is worth its cost at this λ
        if not candidates:
            return []
        rows = torch.stack([c.row for c in candidates])
        threshold = 1 - model.relative_noise() / 2
        novel = model.correlation(rows).amax(-1) <= threshold  # else: within the noise
        taken = {self._key(c) for c in pending}
        chosen: list[tuple[Candidate, Config]] = []
        picked: list[torch.Tensor] = []
        for candidate, is_novel in zip(candidates, novel.tolist(), strict=True):
            if len(chosen) == self._batch:
                break
            if not is_novel:
                continue
            if picked and float((torch.stack(picked) - candidate.row).norm(dim=-1).min()) < (
                BATCH_MIN_DISTANCE
            ):
                continue
            config = self._config_of(candidate)
            if not self._is_new(config, taken):
                continue
            taken.add(self._key(config))
            chosen.append((candidate, config))
            picked.append(candidate.row)
        return chosen

    def _typical_trial_cost(self) -> float:
        """The median true cost of a full trial (all stages run), the unit of λ."""
        totals = [sum(o.stage_costs) for o in self.observations.items if None not in o.stage_costs]
        return statistics.median(totals) if totals else 1.0
