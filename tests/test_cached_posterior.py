import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from test_kernels import clustered

from memotune.tuner.cached_posterior import CachedPosteriorGP
from memotune.tuner.kernels import SharedOutputKernel
from memotune.tuner.models import GPFitter


def fitted(covar=None) -> tuple[SingleTaskGP, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    X = torch.rand(60, 5, generator=generator, dtype=torch.float64)
    Y = (
        10
        + 4 * (X**2).sum(-1, keepdim=True)
        + 0.05 * torch.randn(60, 1, generator=generator, dtype=torch.float64)
    )
    model = SingleTaskGP(X, Y, covar_module=covar)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model.eval(), Y


def test_matches_botorch_posterior_and_log_ei():
    kernels = (
        None,  # BoTorch's default RBF kernel: evaluated directly
        get_covar_module_with_dim_scaled_prior(ard_num_dims=2, active_dims=[0, 1]),
        ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=5)),  # through GPyTorch's modules
    )
    for covar in kernels:
        model, Y = fitted(covar)
        assert_matches_botorch(model, torch.rand(40, 1, 5, dtype=torch.float64), Y.max())


def test_matches_botorch_posterior_with_shared_stage_outputs():
    X, Y, _ = clustered()
    model = GPFitter(shared_outputs=[2]).fit(X, Y)
    assert isinstance(model.covar_module, SharedOutputKernel)
    fresh = torch.rand(10, 5, dtype=torch.float64)
    on_prefix = torch.rand(10, 5, dtype=torch.float64)
    on_prefix[:, :2] = X[::6][:, :2].repeat(2, 1)[:10]  # candidates on cached outputs
    assert_matches_botorch(model, torch.cat([fresh, on_prefix]).unsqueeze(1), Y.max())


def assert_matches_botorch(model: SingleTaskGP, X: torch.Tensor, best_f) -> None:
    """``CachedPosteriorGP`` gives ``model``'s posterior and log EI at ``X``."""
    cached = CachedPosteriorGP(model)
    with torch.no_grad():
        reference = model.posterior(X)
        mean, variance = cached.mean_and_variance(X)
        assert torch.allclose(mean, reference.mean.squeeze(-1), atol=1e-9)
        assert torch.allclose(variance, reference.variance.squeeze(-1), rtol=1e-7)
        expected = LogExpectedImprovement(model, best_f=best_f)(X)
        assert torch.allclose(LogExpectedImprovement(cached, best_f=best_f)(X), expected, atol=1e-6)


def test_gradients_match():
    model, Y = fitted()
    cached = CachedPosteriorGP(model)
    X = torch.rand(4, 1, 5, dtype=torch.float64, requires_grad=True)
    LogExpectedImprovement(model, best_f=Y.max())(X).sum().backward()
    expected = X.grad.clone()
    X.grad = None
    LogExpectedImprovement(cached, best_f=Y.max())(X).sum().backward()
    assert torch.allclose(X.grad, expected, atol=1e-6)
