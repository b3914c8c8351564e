"""memo diagnostic: does its cost-awareness hold it behind EI on language?"""

from memotune.tuner.memo import MemoTuner


class MemoCostBlind(MemoTuner):
    """η = 0 throughout: log EI alone chooses, the cost of a configuration (and what its
    cached prefix saves) plays no part; everything else is memo's."""

    name = "memo-cost-blind"

    def eta(self, budget):
        return 0.0
