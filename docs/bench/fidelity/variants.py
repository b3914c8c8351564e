"""``memo`` with its continuation of cached training runs turned off: the baseline
"without early stopping and continuation" of the fidelity tables (run without
``+asha``, it neither stops nor continues training)."""

from memotune.tuner.memo import MemoTuner


class MemoWithoutContinuation(MemoTuner):
    name = "memo-no-continuation"

    def __init__(self, pipeline, **options) -> None:
        super().__init__(pipeline, max_continued=0, **options)
