"""The GPs: fitting with warm starts, and the cost models built from them."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from botorch.exceptions import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch.quasirandom import SobolEngine

from .cached_posterior import CachedPosteriorGP
from .encoding import SpaceEncoder
from .kernels import SharedOutputKernel
from .observations import Observations


class GPFitter:
    """Fits a ``SingleTaskGP`` (standardized outcomes) on a growing data set.

    Hyperparameters start from the last fit and are re-optimized on a schedule
    (every new point while data is scarce, then every ~n/``refit_divisor``
    points), a warm-started refit taking at most ``warm_maxiter`` L-BFGS
    steps; between refits the model is rebuilt on all data with the last
    hyperparameters, which costs milliseconds instead of the fit's tenths of a
    second.
    """

    def __init__(
        self,
        active_dims: Sequence[int] | None = None,
        refit_divisor: int = 10,
        warm_maxiter: int = 40,
        shared_outputs: Sequence[int] = (),
    ) -> None:
        self.active_dims = list(active_dims) if active_dims is not None else None
        #: column ends of the stage outputs trials share an effect of (``SharedOutputKernel``)
        self.shared_outputs = list(shared_outputs)
        self.refit_divisor = refit_divisor
        self.warm_maxiter = warm_maxiter
        self._hyperparameters: dict[str, torch.Tensor] | None = None
        self._fitted_at = 0
        self.refitted = False

    def fit(self, X: torch.Tensor, Y: torch.Tensor, *, may_refit: bool = True) -> SingleTaskGP:
        """A model on ``(X, Y)``, its hyperparameters re-optimized if one is due on the
        schedule and ``may_refit`` (the first fit always happens); ``refitted`` says
        whether this call did."""
        model = self.build(X, Y)
        n = len(X)
        due = n - self._fitted_at >= max(1, n // self.refit_divisor)
        self.refitted = self._hyperparameters is None or (due and may_refit)
        if self.refitted:
            warm = {"options": {"maxiter": self.warm_maxiter}} if self._hyperparameters else None
            if isinstance(model.covar_module, SharedOutputKernel):
                model.covar_module.restart_shares()
            try:
                fit_gpytorch_mll(
                    ExactMarginalLogLikelihood(model.likelihood, model), optimizer_kwargs=warm
                )
            except ModelFittingError as error:  # keep the last (or default) hyperparameters
                warnings.warn(
                    f"GP fit failed ({error}); keeping previous hyperparameters", stacklevel=2
                )
            self._hyperparameters = _hyperparameters(model)
            self._fitted_at = n
        return model.eval()

    @property
    def fitted_at(self) -> int:
        """How many points the hyperparameters were last optimized on (0: never)."""
        return self._fitted_at

    def build(self, X: torch.Tensor, Y: torch.Tensor) -> SingleTaskGP:
        """A model on ``(X, Y)`` with the last fitted hyperparameters (no fitting)."""
        covar = None
        if self.active_dims is not None:
            covar = get_covar_module_with_dim_scaled_prior(
                ard_num_dims=len(self.active_dims), active_dims=self.active_dims
            )
        elif self.shared_outputs:
            base = get_covar_module_with_dim_scaled_prior(ard_num_dims=X.shape[-1])
            covar = SharedOutputKernel(base, self.shared_outputs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not standardized.*")
            warnings.filterwarnings("ignore", message=".*not contained to the unit cube.*")
            model = SingleTaskGP(X, Y, covar_module=covar)
        if self._hyperparameters is not None:
            model.load_state_dict(self._hyperparameters, strict=False)
        return model.eval()


def condition_on_believed(
    fitter: GPFitter, model: SingleTaskGP, X: torch.Tensor, Y: torch.Tensor, pending: torch.Tensor
) -> SingleTaskGP:
    """The model with ``pending`` rows added at their posterior mean ("kriging believer"),
    so proposals made while those trials run steer away from them."""
    if len(pending) == 0:
        return model
    with torch.no_grad():
        believed = model.posterior(pending).mean
    return fitter.build(torch.cat([X, pending]), torch.cat([Y, believed]))


def _hyperparameters(model: SingleTaskGP) -> dict[str, torch.Tensor]:
    """Kernel, mean and noise parameters; the outcome transform is data, not a hyperparameter."""
    return {
        name: value.detach().clone()
        for name, value in model.state_dict().items()
        if not name.startswith("outcome_transform")
    }


#: Cost GPs refit every ~n/5 new points (the objective's every ~n/10).
COST_REFIT_DIVISOR = 5


class CostModel:
    """E[1 / C(x, δ)] from GPs on standardized log true compute cost.

    Per stage (``per_stage=True``): stage k's GP takes the hyperparameters of
    stages 0..k, because upstream settings change downstream cost. Stages
    before δ are cached and cost ``cached_cost`` in total (their load time, or
    ε) instead of a sample. Otherwise one GP models the total cost of a trial
    over all hyperparameters (EIPS, CArBO) and δ is ignored.

    A trial also costs ``overhead`` (the tuner's charged seconds per proposal),
    so a reused prefix that makes a trial nearly free is not taken for being
    free when choosing the trial costs half a second.

    Cost GPs are refitted half as often as the objective's: costs are smooth
    and their hyperparameters settle early.

    The expectation is quasi-Monte-Carlo over the cost posteriors, with fixed
    scrambled-Sobol normal base samples, so it is smooth in x and can be
    optimized by gradient.
    """

    def __init__(
        self, encoder: SpaceEncoder, *, per_stage: bool, samples: int = 256, seed: int = 0
    ) -> None:
        self.encoder = encoder
        self.per_stage = per_stage
        n_models = encoder.n_stages if per_stage else 1
        if per_stage:
            self.fitters = [
                GPFitter(active_dims=range(encoder.stage_end[k]), refit_divisor=COST_REFIT_DIVISOR)
                if encoder.stage_end[k]
                else None
                for k in range(n_models)
            ]
        else:
            self.fitters = [GPFitter(refit_divisor=COST_REFIT_DIVISOR)]
        engine = SobolEngine(n_models, scramble=True, seed=seed)
        uniform = engine.draw(samples, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        self.base_samples = torch.distributions.Normal(0.0, 1.0).icdf(uniform)  # samples × models
        self.models: list[CachedPosteriorGP | float] = []
        self.refitted = False  # whether the last fit re-optimized any hyperparameters
        #: What every trial costs besides its stages: the tuner's own seconds per
        #: proposal where they are charged to the budget (else 0).
        self.overhead = 0.0

    def fit(self, observations: Observations, *, may_refit: bool = True) -> None:
        """Fit every cost GP (see :meth:`GPFitter.fit`); a stage without inputs or data
        gets a constant log cost."""
        self.models = []
        self.refitted = False
        for k, fitter in enumerate(self.fitters):
            if self.per_stage:
                data = observations.stage_cost_data(k)
            else:
                data = observations.total_cost_data()
            if data is None:
                self.models.append(0.0)  # log(1): nothing known yet
            elif fitter is None or len(data[0]) < 2:
                self.models.append(float(data[1].mean()))
            else:
                self.models.append(CachedPosteriorGP(fitter.fit(*data, may_refit=may_refit)))
                self.refitted |= fitter.refitted

    def log_expected_inverse_cost(
        self, X: torch.Tensor, depth: torch.Tensor, cached_cost: torch.Tensor
    ) -> torch.Tensor:
        """``log E[1/C]`` for ``X`` of shape ``b × 1 × d``; ``depth`` and ``cached_cost``
        have shape ``b`` (stages cached ahead of each candidate, and what they cost)."""
        batch = X.shape[:-2]
        means, stds = [], []
        for model in self.models:
            if isinstance(model, float):
                means.append(torch.full(batch, model, dtype=X.dtype))
                stds.append(torch.zeros(batch, dtype=X.dtype))
            else:
                mean, variance = model.mean_and_variance(X)
                means.append(mean.reshape(batch))
                stds.append(variance.sqrt().reshape(batch))
        mean, std = torch.stack(means, -1), torch.stack(stds, -1)  # b × S
        log_costs = mean + std * self.base_samples.reshape(-1, *([1] * len(batch)), len(means))
        if self.per_stage:
            stages = torch.arange(len(self.models))
            ran = stages >= depth.unsqueeze(-1)  # b × S: stages that still have to run
            log_costs = log_costs.masked_fill(~ran, -math.inf)
        else:
            cached_cost = torch.zeros_like(cached_cost)
        # a zero fixed cost enters as 1e-9: negligible, and keeps the log finite
        fixed = (cached_cost + self.overhead).clamp_min(1e-9)
        log_fixed = fixed.log().expand(log_costs.shape[:-1]).unsqueeze(-1)
        log_total = torch.logsumexp(torch.cat([log_costs, log_fixed], -1), -1)  # samples × b
        return torch.logsumexp(-log_total, 0) - math.log(log_total.shape[0])
