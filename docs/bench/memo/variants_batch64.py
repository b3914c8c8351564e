"""Experimental variants: EEIPU's acquisition with memo's effort and noise handling."""

import math

import torch

from memotune.tuner.acquisition import CostCooledLogEI
from memotune.tuner.memo import MemoTuner


class FastEEIPU(MemoTuner):
    name = "fast-eeipu"
    noisy_best = True

    def _acquisition(self, model, X, Y, budget):
        eta = self.eta(budget)
        if self.noisy_best:
            with torch.no_grad():
                best_f = float(model.mean_and_variance(X)[0].max())
        else:
            best_f = float(Y.max())
        self._incumbent = -math.inf  # no PBGI-D decay

        def make(depth, cached):
            return CostCooledLogEI(model, best_f, self.costs, eta, depth, cached)

        return make, {"eta": eta}


class FastEEIPURaw(FastEEIPU):
    name = "fast-eeipu-raw"
    noisy_best = False
