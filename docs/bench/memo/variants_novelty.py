"""memo ablations of the near-duplicate filter. By default a candidate is refused when
the standard deviation of its difference from an observed or running configuration is
under the noise's (``Var[f(x) − f(x')] < σ²_noise``)."""

from memotune.tuner.memo import MemoTuner


class _Noise:
    """The model as the filter sees it, its relative noise scaled by ``factor``."""

    def __init__(self, model, factor: float) -> None:
        self._model, self._factor = model, factor

    def __getattr__(self, name):
        return getattr(self._model, name)

    def relative_noise(self) -> float:
        return self._model.relative_noise() * self._factor


class MemoAnyNovel(MemoTuner):
    """No filter: only exact twins are refused."""

    def _choose(self, candidates, pending, model, budget):
        return super()._choose(candidates, pending, _Noise(model, 0.0), budget)


class MemoHalfNoise(MemoTuner):
    """Refused only under half the noise's standard deviation."""

    def _choose(self, candidates, pending, model, budget):
        return super()._choose(candidates, pending, _Noise(model, 0.25), budget)
