"""The acquisition: log EI plus η times log E[1/C], with C aware of cached prefixes.

EEIPU's acquisition is ``EI(x) · E[1/C(x, δ)]^η``; in log space
``log α = logEI(x) + η · log E[1/C(x, δ)]`` (LogEI keeps the gradient alive
where EI underflows). η = 0 gives plain EI; η = 1 and a total-cost model give
EIPS; cooling η from 1 to 0 gives CArBO, or EEIPU with per-stage costs and δ.
"""

from __future__ import annotations

import math

import torch
from botorch.acquisition import AcquisitionFunction, LogExpectedImprovement
from botorch.acquisition.analytic import _log_ei_helper
from botorch.models.model import Model
from botorch.utils.transforms import t_batch_mode_transform

from .models import CostModel


class CostCooledLogEI(AcquisitionFunction):
    """``logEI(x) + η · log E[1/C(x, δ)]``, one value per t-batch of one point.

    ``depth`` (stages reused from the cache) and ``cached_cost`` (what reusing
    them costs) are given per t-batch element, so candidates for different
    cached prefixes can be scored and optimized in one batch.
    """

    def __init__(
        self,
        model: Model,
        best_f: float,
        cost_model: CostModel | None = None,
        eta: float = 0.0,
        depth: torch.Tensor | None = None,
        cached_cost: torch.Tensor | None = None,
    ) -> None:
        super().__init__(model)
        self.log_ei = LogExpectedImprovement(model, best_f=best_f)
        self.cost_model = cost_model
        self.eta = float(eta)
        self.depth = depth
        self.cached_cost = cached_cost

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        value = self.log_ei(X)
        if self.cost_model is None or self.eta <= 0:
            return value
        batch = X.shape[:-2]
        depth = self.depth if self.depth is not None else torch.zeros(batch, dtype=torch.long)
        cached = (
            self.cached_cost if self.cached_cost is not None else torch.zeros(batch, dtype=X.dtype)
        )
        log_inverse_cost = self.cost_model.log_expected_inverse_cost(X, depth, cached.to(X))
        return value + self.eta * log_inverse_cost


class GittinsIndex(AcquisitionFunction):
    """The Pandora's box Gittins index of each candidate (Xie et al., NeurIPS 2024).

    The index of ``x`` is the threshold ``g`` at which opening the box is worth its
    cost: ``E[(f(x) − g)⁺] = λ · c(x, δ)``. With a Gaussian posterior ``(μ, σ)``
    that is ``g = μ − σ·z`` where ``h(z) = φ(z) + z·Φ(z) = λ·c/σ``. Unlike EI per
    unit cost, which a 10× cheaper candidate wins by 10×, the index grows only
    with ``sqrt(2·log(σ / λc))`` as cost falls: cheap reuse of a cached prefix is
    preferred when the posterior says the prefix is as promising, not because it
    is cheap.

    ``c`` is ``1 / E[1/C]`` from the stage cost models (stages cached ahead of
    the candidate cost their load time), divided by ``cost_scale`` (a typical
    full trial) so that λ is in objective units per typical trial, and no
    less than ``min_cost`` of it.
    """

    def __init__(
        self,
        model: Model,
        lmbda: float,
        cost_model: CostModel | None = None,
        cost_scale: float = 1.0,
        depth: torch.Tensor | None = None,
        cached_cost: torch.Tensor | None = None,
        min_cost: float = 0.0,
    ) -> None:
        super().__init__(model)
        self.lmbda = float(lmbda)
        self.min_cost = float(min_cost)
        self.cost_model = cost_model
        self.cost_scale = float(cost_scale)
        self.depth = depth
        self.cached_cost = cached_cost

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        mean, variance = self.model.mean_and_variance(X)  # b × 1
        mean, sigma = mean.squeeze(-1), variance.sqrt().squeeze(-1).clamp_min(1e-9)
        log_ratio = math.log(self.lmbda) - sigma.log()
        if self.cost_model is not None:
            batch = X.shape[:-2]
            depth = self.depth if self.depth is not None else torch.zeros(batch, dtype=torch.long)
            cached = (
                self.cached_cost
                if self.cached_cost is not None
                else torch.zeros(batch, dtype=X.dtype)
            )
            log_cost = -self.cost_model.log_expected_inverse_cost(X, depth, cached.to(X))
            log_cost = log_cost - math.log(self.cost_scale)
            if self.min_cost > 0:
                log_cost = log_cost.clamp_min(math.log(self.min_cost))
            log_ratio = log_ratio + log_cost
        return mean - sigma * solve_log_ei_helper(log_ratio)


def solve_log_ei_helper(log_ratio: torch.Tensor, steps: int = 24) -> torch.Tensor:
    """``z`` with ``log h(z) = log_ratio``, ``h(z) = φ(z) + z·Φ(z)``.

    ``log h`` is increasing and concave, so Newton's method started left of the
    root climbs to it monotonically; it runs without gradient, and one more
    step on top carries the gradient by the implicit function theorem
    (``dz/d log r = h(z)/Φ(z)``).
    """
    with torch.no_grad():
        target = log_ratio.detach()
        z = -(2 * target.clamp_max(0).neg()).sqrt() - 4.0  # log h(z) < target here
        for _ in range(steps):
            z = (
                z
                + (target - _log_ei_helper(z))
                * (_log_ei_helper(z) - torch.special.log_ndtr(z)).exp()
            )
        inverse_slope = (_log_ei_helper(z) - torch.special.log_ndtr(z)).exp()  # h(z) / Φ(z)
    return z + (log_ratio - _log_ei_helper(z).detach()) * inverse_slope
