"""memo with an 8% thinking share, trials earning at their true charge: the default
from commit 8b7fc82 on; at d8476b4, where this ran, the default was 5%."""

from memotune.tuner.memo import MemoTuner


class MemoShare8(MemoTuner):
    def __init__(self, pipeline, **options):
        super().__init__(pipeline, target_share=0.08, **options)
