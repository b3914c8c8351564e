"""memo whose objective GP's hyperparameters are fitted on one trial per first stage
(to measure, not the default).

On language, trials that reuse a few tokenizers taught memo's GP a short vocabulary
lengthscale (docs/benchmarks.md, "Why memo sticks to its first good tokenizer").
Here the hyperparameters are optimized on the best trial of each distinct first-stage
setting only, so clusters of trials on one cached first stage do not shape them; the
model then takes every trial with those hyperparameters.
"""

import torch

from memotune.tuner.memo import MemoTuner
from memotune.tuner.models import GPFitter


class OnePerPrefixFitter(GPFitter):
    """``GPFitter`` whose refits see the best row of each distinct value of the first
    ``columns`` columns."""

    def __init__(self, columns: int, **options):
        super().__init__(**options)
        self.columns = columns

    def fit(self, X, Y, *, may_refit=True):
        n = len(X)
        due = n - self._fitted_at >= max(1, n // self.refit_divisor)
        refit = self._hyperparameters is None or (due and may_refit)
        if refit:
            best: dict[tuple, int] = {}
            for i, key in enumerate(map(tuple, X[:, : self.columns].tolist())):
                if key not in best or Y[i] > Y[best[key]]:
                    best[key] = i
            keep = torch.tensor(sorted(best.values()))
            self._fitted_at = 0  # due on the subset, whatever its size
            super().fit(X[keep], Y[keep])
            self._fitted_at = n
        self.refitted = refit
        return self.build(X, Y)


class MemoOnePerPrefixFit(MemoTuner):
    """memo, its objective GP's hyperparameters fitted on one trial per first stage."""

    def __init__(self, pipeline, **options):
        super().__init__(pipeline, **options)
        self.objective_fitter = OnePerPrefixFitter(self.encoder.stage_end[0])
