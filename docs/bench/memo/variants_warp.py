"""memo variants on the objective's warp.

Until ``185dc7c``, ``memo`` modelled the objective through a Yeo-Johnson
power transform fitted to the values (as HEBO does). It brought memo's
synthetic-3 score from −3.38 to −1.67, but it reshapes the whole range: it
stretches the good values, where the acquisition decides, and a greedy choice
on it (``variants_pool.py:MemoPool`` at ``683e9b5``) lost every ensemble seed,
while on the values as observed it tied ``memo``.

Since then ``memo`` warps only the bad tail (``tail_warp`` in
``tuner/memo.py``). It was measured first as ``MemoTailWarp`` and
``MemoPoolTailWarp`` here, at ``34499b3`` (``docs/bench/memo/*-tail-warp*.json``);
those are now ``memo`` and ``variants_pool.py:MemoPool``. ``MemoYeoJohnson``
keeps the Yeo-Johnson warp, to compare against.
"""

import torch
from scipy import stats

from memotune.tuner.memo import MemoTuner


def yeo_johnson(Y: torch.Tensor) -> torch.Tensor:
    """The standardized values through a fitted Yeo-Johnson power transform."""
    std = float(Y.std()) if len(Y) > 1 else 0.0
    if std == 0.0:  # too few values, or all alike: nothing to transform
        return Y
    standardized = ((Y - Y.mean()) / std).squeeze(-1).numpy()
    warped, _ = stats.yeojohnson(standardized)
    return torch.from_numpy(warped).unsqueeze(-1)


class MemoYeoJohnson(MemoTuner):
    """memo with the Yeo-Johnson warp (the default before the tail warp)."""

    def _warp(self, Y):
        return yeo_johnson(Y)
