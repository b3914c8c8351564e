"""memo ablations: no batching; no batching and the raw best as EI's incumbent."""

from memotune.tuner.bayes import GPTuner
from memotune.tuner.memo import MemoTuner


class MemoNoBatch(MemoTuner):
    def __init__(self, pipeline, **options):
        super().__init__(pipeline, max_batch=1, **options)


class MemoNoBatchRaw(MemoNoBatch):
    def _acquisition(self, model, X, Y, budget):
        return GPTuner._acquisition(self, model, X, Y, budget)
