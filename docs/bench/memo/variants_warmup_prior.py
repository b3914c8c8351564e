"""memo variants measured on synthetic-3 at a5cfa38 (``synthetic-3-nested-warmup.json``):
a warm-up whose odd points reuse the previous point's first stages, and a wide prior on
the shared-output shares (the prior later tried in the tuner itself, 2a85e67)."""

import math

import torch
from gpytorch.priors import LogNormalPrior
from torch.quasirandom import SobolEngine

from memotune.tuner.base import Proposal
from memotune.tuner.budget import PHASE, WARMUP
from memotune.tuner.memo import MemoTuner
from memotune.tuner.models import GPFitter


class MemoNested(MemoTuner):
    """Warm-up point 2j+1 keeps the first d stages of point 2j (d cycling over the
    stages with settings), so half the warm-up reuses cached prefixes."""

    name = "memo-nested"

    def _warmup(self, index, pending):
        depths = [d for d in range(1, len(self.pipeline.stages)) if self._has_free_columns(d)]
        if index >= self.n_init or index % 2 == 0 or not depths:
            return super()._warmup(index, pending)
        depth = depths[(index // 2) % len(depths)]
        engine = SobolEngine(self.encoder.dim, scramble=True, seed=self.seed)
        engine.fast_forward(index - 1)
        rows = engine.draw(2, dtype=torch.float64)
        end = self.encoder.prefix_end(depth)
        config = self.encoder.decode(torch.cat([rows[0, :end], rows[1, end:]]))
        if not self._is_new(config, {self._key(c) for c in pending}):
            return super()._warmup(index, pending)
        return Proposal(config, {PHASE: WARMUP, "prefix_depth": depth})


class _WidePriorFitter(GPFitter):
    def build(self, X, Y):
        model = super().build(X, Y)
        kernel = model.covar_module
        if "shares_prior" in getattr(kernel, "_priors", {}):
            _, closure, setting = kernel._priors["shares_prior"]
            wide = LogNormalPrior(math.log(0.003), 3.0)
            kernel._priors["shares_prior"] = (wide, closure, setting)
        return model


class MemoWeakPrior(MemoTuner):
    """The shares under LogNormal(log 0.003, 3) instead of LogNormal(log 0.05, 1.5)."""

    name = "memo-wide-prior"

    def __init__(self, pipeline, **options):
        super().__init__(pipeline, **options)
        ends = self.objective_fitter.shared_outputs
        self.objective_fitter = _WidePriorFitter(shared_outputs=ends)
