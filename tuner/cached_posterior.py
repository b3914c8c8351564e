"""A fitted GP's posterior, precomputed for fast repeated evaluation.

Optimizing an acquisition evaluates the same fitted GPs at a few new points
hundreds of times; through GPyTorch's lazy prediction path each small call
costs about 2 ms here, nearly all of it overhead. ``CachedPosteriorGP``
factors the training covariance once (Cholesky) and then evaluates the
posterior with a few dense operations, using the fitted model's own kernel,
mean, noise and outcome transform, so it computes exactly what
``model.posterior(X)`` computes (the tests check it), about seven times
faster. It is a BoTorch ``Model``, so BoTorch's acquisition functions use it
unchanged. For BoTorch's default kernel (an RBF kernel over some input
dimensions, with a constant mean), alone or as the base of a
``SharedOutputKernel``, the kernel is evaluated directly, as GPyTorch
computes it, without its lazy-tensor machinery; any other kernel goes
through the model's own modules.
"""

from __future__ import annotations

import torch
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import RBFKernel
from gpytorch.means import ConstantMean
from linear_operator.operators import DiagLinearOperator

from .kernels import SharedOutputKernel, shared_effects


class CachedPosteriorGP(Model):
    """Posterior of a fitted (eval-mode) ``SingleTaskGP`` for one output, q = 1."""

    num_outputs = 1

    def __init__(self, model: SingleTaskGP) -> None:
        super().__init__()
        self.model = model
        with torch.no_grad():
            train_x = model.train_inputs[0]
            prior_mean = model.mean_module(train_x)
            covariance = model.covar_module(train_x).to_dense()
            covariance = covariance + model.likelihood.noise * torch.eye(
                len(train_x), dtype=train_x.dtype
            )
            self._cholesky = torch.linalg.cholesky(covariance)
            self._alpha = torch.cholesky_solve(
                (model.train_targets - prior_mean).unsqueeze(-1), self._cholesky
            )
        self._train_x = train_x
        self._rbf = _RBF.of(model, train_x)
        transform = getattr(model, "outcome_transform", None)
        self._offset = (
            transform.means.reshape(())
            if transform is not None
            else torch.tensor(0.0, dtype=train_x.dtype)
        )
        self._scale = (
            transform.stdvs.reshape(())
            if transform is not None
            else torch.tensor(1.0, dtype=train_x.dtype)
        )

    def mean_and_variance(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance (original outcome units) at ``X`` (``... × d``)."""
        model = self.model
        flat = X.reshape(-1, X.shape[-1])  # one 2-D solve, not one per t-batch
        if self._rbf is not None:
            cross = self._rbf.cross(flat)  # points × n
            prior_mean = self._rbf.constant
            prior_variance = torch.full_like(flat[:, 0], self._rbf.variance)
        else:
            cross = model.covar_module(flat, self._train_x).to_dense()
            prior_mean = model.mean_module(flat)
            prior_variance = model.covar_module(flat, flat, diag=True)
        mean = prior_mean + (cross @ self._alpha).squeeze(-1)
        solved = torch.linalg.solve_triangular(self._cholesky, cross.T, upper=False)
        variance = (prior_variance - solved.pow(2).sum(0)).clamp_min(1e-12)
        mean, variance = mean * self._scale + self._offset, variance * self._scale**2
        return mean.reshape(X.shape[:-1]), variance.reshape(X.shape[:-1])

    def correlation(self, X: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
        """Prior correlation of the latent function between ``X`` (``points × d``) and
        ``others`` (default: every training point), ``points × len(others)``."""
        others = self._train_x if others is None else others
        kernel = self.model.covar_module
        with torch.no_grad():
            cross = kernel(X, others).to_dense()
            scale = kernel(X, X, diag=True).unsqueeze(-1) * kernel(others, others, diag=True)
        return cross / scale.sqrt()

    def relative_noise(self) -> float:
        """The fitted observation noise as a share of the latent prior variance."""
        with torch.no_grad():
            prior = self.model.covar_module(self._train_x[:1], self._train_x[:1], diag=True)
            return float(self.model.likelihood.noise.mean() / prior.squeeze())

    def posterior(self, X: torch.Tensor, **kwargs) -> GPyTorchPosterior:
        mean, variance = self.mean_and_variance(X)  # X: b × 1 × d
        return GPyTorchPosterior(MultivariateNormal(mean, DiagLinearOperator(variance)))


class _RBF:
    """``exp(-||x - x'||² / 2)`` over the kernel's active dimensions, lengthscale-scaled,
    computed as GPyTorch's ``RBFKernel`` does (centred, then the expanded square), plus
    a ``SharedOutputKernel``'s shared effects where the RBF kernel is its base."""

    def __init__(
        self,
        dims: torch.Tensor,
        lengthscale: torch.Tensor,
        constant: torch.Tensor,
        train_x,
        shared: tuple[list[int], torch.Tensor] = ([], torch.zeros(0)),
    ) -> None:
        self.dims = dims
        self.lengthscale = lengthscale
        self.constant = constant
        self.train_x = train_x
        self.ends, self.shares = shared
        self.variance = 1.0 + float(self.shares.sum())  # the prior variance at any point
        scaled = train_x[:, dims] / lengthscale
        self.centre = scaled.mean(0, keepdim=True)
        self.train = scaled - self.centre
        self.train_norms = self.train.pow(2).sum(-1)

    @classmethod
    def of(cls, model: SingleTaskGP, train_x: torch.Tensor) -> _RBF | None:
        """The direct form of ``model``'s kernel, if it is an RBF kernel (alone or under a
        ``SharedOutputKernel``) with a constant mean."""
        kernel, mean = model.covar_module, model.mean_module
        shared = ([], torch.zeros(0))
        if type(kernel) is SharedOutputKernel:
            shared = (kernel.ends, kernel.shares.detach())
            kernel = kernel.base
        if type(kernel) is not RBFKernel or type(mean) is not ConstantMean:
            return None
        dims = kernel.active_dims
        if dims is None:
            dims = torch.arange(train_x.shape[-1])
        lengthscale = kernel.lengthscale.detach().reshape(-1)
        with torch.no_grad():
            return cls(dims, lengthscale, mean.constant.detach(), train_x, shared)

    def cross(self, X: torch.Tensor) -> torch.Tensor:
        x = X[:, self.dims] / self.lengthscale - self.centre
        squared = x.pow(2).sum(-1, keepdim=True) + self.train_norms - 2 * x @ self.train.T
        rbf = torch.exp(-0.5 * squared.clamp_min(0))
        if not self.ends:
            return rbf
        return rbf + shared_effects(X, self.train_x, self.ends, self.shares)
