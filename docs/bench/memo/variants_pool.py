"""memo whose batch members are chosen one at a time, each on what the trials before it
returned, from the candidates of the batch's optimization.

``memo`` fills a batch (one optimization, several trials) up front: the
optimization's best candidate, then the next best on each other first stage.
On ensemble, language and regression (seed 3, budget 240, ``fc-v782``) none of
its optimizations chose to run a new first stage; every new first stage was a
fill-in, an unpolished screening point on a first stage the batch did not
build on yet: 13 trials and 38% of the budget on the ensemble, none improving.

Here one optimization still pays for a batch, but it proposes only its best
candidate and keeps its best ``POOL`` candidates (polished and screened). Each
later trial of the batch is the pool's best candidate under the models
rebuilt on every trial finished so far (the hyperparameters kept, no
search): a few tens of milliseconds where an optimization costs tenths of a
second. So each trial of a batch is chosen as EEIPU chooses (by the
acquisition, on the data so far), without the rule that spreads a batch
over first stages.

It models the objective as ``memo`` does: in its runs at ``70e6f9d`` and
``683e9b5`` (``*-pool-16core.json``, ``ensemble-pool-fc-v782.json``) that was
the Yeo-Johnson warp; since ``185dc7c`` it is the bad tail's warp.
"""

import math
import statistics
import time
from collections import deque

import torch

from memotune.tuner.base import Proposal
from memotune.tuner.bayes import BO, _chosen
from memotune.tuner.budget import PHASE
from memotune.tuner.cached_posterior import CachedPosteriorGP
from memotune.tuner.memo import MemoTuner
from memotune.tuner.models import condition_on_believed
from memotune.tuner.optimize import Candidate

#: The optimization's best candidates a batch's later trials are chosen from.
POOL = 256


class MemoPool(MemoTuner):
    def __init__(self, pipeline, **options):
        super().__init__(pipeline, **options)
        self._pool: list[Candidate] = []
        self._pool_left = 0
        self._rescore_seconds: deque[float] = deque(maxlen=10)

    def _propose(self, pending, budget):
        if self._pool_left > 0:
            started = time.perf_counter()
            proposal = self._from_pool(pending, budget)
            if proposal is not None:
                seconds = time.perf_counter() - started
                self.effort.spent += seconds
                self._rescore_seconds.append(seconds)
                return proposal
        proposal = super()._propose(pending, budget)
        if "batch" in proposal.info:  # an optimization's own choice
            proposal.info["batch"] = 1 + self._pool_left
        return proposal

    def _choose(self, candidates, pending, model, budget):
        """The optimization's best new candidate; its best ``POOL`` kept for the rest of
        the batch."""
        batch, self._batch = self._paying_batch(), 1
        chosen = super()._choose(candidates, pending, model, budget)
        self._batch = batch
        self._pool = candidates[:POOL]
        self._pool_left = batch - 1
        return chosen

    def _paying_batch(self):
        """memo's batch size, grown so that its trials also pay for choosing each other
        member from the pool: ``b`` with ``b · earned ≥ owed + (b − 1) · rescore``."""
        effort = self.effort
        if self._batch == 1 or not self._rescore_seconds:
            return self._batch
        per_trial = effort.rate * statistics.median(effort.trial_costs)
        rescore = statistics.median(self._rescore_seconds)
        owed = statistics.median(effort.plain_seconds) + max(0.0, -effort.balance)
        size = math.ceil((owed - rescore) / max(per_trial - rescore, 1e-9))
        return max(1, min(effort.max_batch, size))

    def _from_pool(self, pending, budget):
        """The pool's best candidate under models rebuilt on the data so far."""
        self._pool_left -= 1
        X, values = self.observations.objective_data()
        Y = self._warp(values)
        model = self.objective_fitter.fit(X, Y, may_refit=False)
        pending_rows = self.encoder.encode_many([self.pipeline.validate(c) for c in pending])
        model = CachedPosteriorGP(
            condition_on_believed(self.objective_fitter, model, X, Y, pending_rows)
        )
        self.costs.fit(self.observations, may_refit=False)
        self.costs.overhead = self._overhead()
        make_acquisition, info = self._acquisition(model, X, Y, budget)
        rows = torch.stack([c.row for c in self._pool])
        depth = torch.tensor([c.prefix.depth for c in self._pool], dtype=torch.long)
        cached = torch.tensor([c.prefix.cached_cost for c in self._pool], dtype=torch.float64)
        with torch.no_grad():
            scores = make_acquisition(depth, cached)(rows.unsqueeze(1))
        rescored = sorted(
            (Candidate(c.row, c.prefix, float(s)) for c, s in zip(self._pool, scores, strict=True)),
            key=lambda c: c.value,
            reverse=True,
        )
        batch, self._batch = self._batch, 1
        chosen = MemoTuner._choose(self, rescored, pending, model, budget)
        self._batch = batch
        if not chosen:
            self._pool_left = 0
            return None
        candidate, config = chosen[0]
        return Proposal(config, {**info, PHASE: BO, **_chosen(candidate), "queued": True})


class MemoPoolUnwarped(MemoPool):
    """The pool, on the objective as observed (no Yeo-Johnson warp), as EEIPU models it."""

    def _warp(self, Y):
        return Y
