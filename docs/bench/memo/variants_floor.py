"""memo ablations of the cost floor (``min_cost``: no trial counts as cheaper than this
share of a typical full trial in EI per cost; the default is 0.5)."""

from memotune.tuner.bayes import GPTuner
from memotune.tuner.memo import MemoTuner


class MemoFloor10(MemoTuner):
    """A tenth of a typical full trial: cached prefixes make trials nearly as cheap as
    they are."""

    def __init__(self, pipeline, **options):
        super().__init__(pipeline, min_cost=0.1, **options)


class MemoFloor25(MemoTuner):
    def __init__(self, pipeline, **options):
        super().__init__(pipeline, min_cost=0.25, **options)


class MemoAcquisitionFloor25(MemoTuner):
    """A quarter of a typical full trial in the acquisition only; trials still earn
    thinking time at the default floor (half), so the account is the default's."""

    def _overhead(self) -> float:
        return max(GPTuner._overhead(self), self._floor() / 2)
