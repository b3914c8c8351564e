"""memo with a floor under its objective GP's lengthscales (to measure, not the default).

On language, trials that reuse a few tokenizers taught memo's GP a vocabulary
lengthscale of 0.1-0.2 (EI's data: 0.8); the GP then predicted that the largest
vocabulary, where the best models are, would do harm. A floor makes the GP explain
such differences between trials as noise instead.
"""

from gpytorch.constraints import GreaterThan

from memotune.tuner.memo import MemoTuner
from memotune.tuner.models import GPFitter

FLOOR = 0.3  # in the unit cube


class FlooredFitter(GPFitter):
    """``GPFitter`` whose kernel lengthscales stay at or above ``FLOOR``."""

    def build(self, X, Y):
        model = super().build(X, Y)
        # no transform: the optimizer's bounds enforce it, and values load as they are
        model.covar_module.register_constraint(
            "raw_lengthscale", GreaterThan(FLOOR, transform=None)
        )
        return model


class MemoLengthscaleFloor(MemoTuner):
    """memo, its objective GP's lengthscales at least ``FLOOR``."""

    def __init__(self, pipeline, **options):
        super().__init__(pipeline, **options)
        self.objective_fitter = FlooredFitter()
