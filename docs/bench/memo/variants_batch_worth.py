"""memo ablation: without the local search from the incumbent (the acquisition is
polished from the best screened points only, as before it)."""

from memotune.tuner.memo import MemoTuner


class MemoNoIncumbentStart(MemoTuner):
    def _starts(self, model, X):
        return None
