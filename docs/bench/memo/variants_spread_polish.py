"""memo whose batches are each polished, from distinct first stages.

``memo`` builds a batch from one optimization: the polished best candidate,
then the best of the rest, at most one building on each first stage's cached
output. The rest are unpolished screening points; on the ensemble every
trial that ran a new first stage (17 of 132 on one run) was such a fill-in,
a point of an 11-dimensional Sobol draw, close to random search.

Here a batch's optimization polishes as many starts as the batch has
members, each the best screening point of a different first stage's cached
output (a fresh start counts as its own), so every member of a batch is a
polished candidate, and the batch keeps memo's spread over first stages.
"""

from memotune.tuner.memo import MemoTuner
from memotune.tuner.optimize import optimize_over_prefixes

#: The most starts one optimization polishes (a longer batch fills in from the rest).
MAX_POLISHED = 8


class MemoSpreadPolish(MemoTuner):
    def _optimize(self, make_acquisition, prefixes, index):
        if self._batch == 1:
            return super()._optimize(make_acquisition, prefixes, index)
        return optimize_over_prefixes(
            make_acquisition,
            prefixes,
            self.encoder,
            seed=self.seed * 100_003 + index,
            raw_samples=self.raw_samples,
            polish=min(max(self.polish, self._batch), MAX_POLISHED),
            maxiter=self.maxiter,
            group=self._first_stage,
        )

    def _first_stage(self, prefix):
        """The first stage's settings a prefix reuses (None: it reuses none)."""
        if prefix.depth == 0:
            return None
        return repr(sorted(prefix.config[self.pipeline.stages[0].name].items()))
