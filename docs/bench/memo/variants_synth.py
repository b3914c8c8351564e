"""memo ablations on the synthetic pipelines: which of memo's differences from EEIPU
costs it trials (warping, the posterior-mean incumbent, the near-duplicate filter)."""

from memotune.tuner.acquisition import CostCooledLogEI
from memotune.tuner.memo import MemoTuner


class _Noise:
    def __init__(self, model, factor):
        self._model, self._factor = model, factor

    def __getattr__(self, name):
        return getattr(self._model, name)

    def relative_noise(self):
        return self._model.relative_noise() * self._factor


class MemoUnwarped(MemoTuner):
    def _warp(self, Y):
        return Y


class MemoAnyNovel(MemoTuner):
    def _choose(self, candidates, pending, model, budget):
        return super()._choose(candidates, pending, _Noise(model, 0.0), budget)


class MemoObservedIncumbent(MemoTuner):
    def _acquisition(self, model, X, Y, budget):
        eta = self.eta(budget)
        best_f = float(Y.max())

        def make(depth, cached):
            return CostCooledLogEI(model, best_f, self.costs, eta, depth, cached)

        return make, {"eta": eta}


class MemoWarpOnly(MemoObservedIncumbent):
    def _choose(self, candidates, pending, model, budget):
        return super()._choose(candidates, pending, _Noise(model, 0.0), budget)
