"""memo with the Pandora's Box Gittins index (Xie, Astudillo, Frazier, Scully, Terenin,
NeurIPS 2024) in place of cost-cooled EI per cost and its cost floor.

The index of a candidate x is the threshold g at which opening it is worth its
cost: ``E[max(f(x) − g, 0)] = λ · c(x)``, with c(x) the expected cost of the trial
given the cached prefix it reuses (in typical full trials). EI per cost wins a
trial ten times cheaper by ten times; the index only by the extra Gaussian tail
that a ten times smaller cost buys (about sqrt(2 log 10) standard deviations),
so a cheap tweak of a cached prefix wins when the posterior is still uncertain
about it, not merely because it is cheap. λ halves whenever the best index falls
below the incumbent (PBGI-D's decay: the rule would stop, so ask for less).
"""

import math

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.analytic import _log_ei_helper
from botorch.utils.transforms import t_batch_mode_transform

from memotune.tuner.bayes import GPTuner
from memotune.tuner.memo import MemoTuner

#: Bisection steps that solve for the index (the bracket halves each step).
BISECTION_STEPS = 80


def _log_ei_slope(z: torch.Tensor) -> torch.Tensor:
    """d log h(z) / dz with h(z) = zΦ(z) + φ(z) (h' = Φ)."""
    return torch.exp(torch.special.log_ndtr(z) - _log_ei_helper(z))


def _solve_log_h(target: torch.Tensor) -> torch.Tensor:
    """z with log h(z) = target, h increasing (bisection, no gradient)."""
    low = torch.full_like(target, -60.0)
    high = torch.maximum(torch.full_like(target, 60.0), 2 * target.exp())
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        above = _log_ei_helper(mid) > target
        high = torch.where(above, mid, high)
        low = torch.where(above, low, mid)
    return (low + high) / 2


class GittinsIndex(AcquisitionFunction):
    """``g(x)`` with ``σ h((μ − g)/σ) = λ c(x, δ)``: larger is better."""

    def __init__(self, model, cost_model, lmbda, depth, cached_cost, unit) -> None:
        super().__init__(model)
        self.cost_model = cost_model
        self.log_lambda = math.log(lmbda)
        self.depth = depth
        self.cached_cost = cached_cost
        self.log_unit = math.log(unit)

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        mean, variance = self.model.mean_and_variance(X)
        batch = X.shape[:-2]
        mean = mean.reshape(batch)
        sigma = variance.reshape(batch).clamp_min(1e-12).sqrt()
        log_cost = -self.cost_model.log_expected_inverse_cost(X, self.depth, self.cached_cost.to(X))
        target = self.log_lambda + log_cost - self.log_unit - sigma.log()
        z = _solve_log_h(target.detach())
        # implicit gradient: dz/d target = 1 / (d log h / dz)
        z = z + (target - target.detach()) / _log_ei_slope(z)
        return mean - sigma * z


class MemoGittins(MemoTuner):
    """memo with the Gittins index; trials still earn thinking time at the floor."""

    def __init__(self, pipeline, *, lmbda: float = 0.1, **options) -> None:
        super().__init__(pipeline, **options)
        self.lmbda = lmbda

    def _overhead(self) -> float:
        return GPTuner._overhead(self)

    def _unit(self) -> float:
        """A typical full trial's cost (the median over trials that ran every stage)."""
        totals = [sum(o.stage_costs) for o in self.observations.items if None not in o.stage_costs]
        totals.sort()
        return totals[len(totals) // 2] if totals else 1.0

    def _acquisition(self, model, X, Y, budget):
        with torch.no_grad():
            incumbent = float(model.mean_and_variance(X)[0].max())
        lmbda, unit = self.lmbda, self._unit()

        def make_acquisition(depth, cached):
            return GittinsIndex(model, self.costs, lmbda, depth, cached, unit)

        self._incumbent = incumbent
        return make_acquisition, {"lambda": lmbda, "incumbent": incumbent}

    def _choose(self, candidates, pending, model, budget):
        chosen = super()._choose(candidates, pending, model, budget)
        if chosen and chosen[0][0].value < self._incumbent:
            self.lmbda /= 2
        return chosen
