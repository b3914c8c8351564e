"""memo diagnostics: what holds it behind EEIPU on the ensemble (thinking, or warping)."""

from memotune.tuner.memo import MemoTuner


class MemoThinkingFree(MemoTuner):
    """Half the budget may go to thinking (target share 0.5): every refit on EEIPU's
    schedule is paid for and searches run wide, as EEIPU's do."""

    def __init__(self, pipeline, **options):
        super().__init__(pipeline, target_share=0.5, **options)


class MemoUnwarped(MemoTuner):
    """The objective's GP models the values as observed (no Yeo-Johnson warping)."""

    def _warp(self, Y):
        return Y
