"""memo without the random effect per cached stage output in its objective GP (a plain
RBF kernel over the hyperparameters, as EEIPU's).

The pool variant (``variants_pool.py``) lost to ``memo`` on every ensemble seed by
choosing greedily on memo's model, while EEIPU, choosing greedily on a plain GP,
leads ``memo`` there. This measures whether memo's kernel over stage outputs is
what separates the two on the ensemble.
"""

from memotune.tuner.memo import MemoTuner
from memotune.tuner.models import GPFitter


class MemoUnshared(MemoTuner):
    def __init__(self, pipeline, **options):
        super().__init__(pipeline, **options)
        self.objective_fitter = GPFitter()
