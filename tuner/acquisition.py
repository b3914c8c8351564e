"""The acquisition: log EI plus η times log E[1/C], with C aware of cached prefixes.

EEIPU's acquisition is ``EI(x) · E[1/C(x, δ)]^η``; in log space
``log α = logEI(x) + η · log E[1/C(x, δ)]`` (LogEI keeps the gradient alive
where EI underflows). η = 0 gives plain EI; η = 1 and a total-cost model give
EIPS; cooling η from 1 to 0 gives CArBO, or EEIPU with per-stage costs and δ.
"""

from __future__ import annotations

import torch
from botorch.acquisition import AcquisitionFunction, LogExpectedImprovement
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
