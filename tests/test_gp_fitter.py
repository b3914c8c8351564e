"""The objective's GP with points that carry noise of their own (a pruned trial's forecast)."""

import torch

from memotune.tuner.cached_posterior import CachedPosteriorGP, shared_noise
from memotune.tuner.models import GPFitter


def smooth_data(n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    X = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    return X, torch.sin(3 * X[:, :1]) + X[:, 1:] ** 2


def with_outlier(X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One more point at the middle, far above what its neighbours say."""
    middle = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    true = torch.sin(torch.tensor(1.5)) + 0.25
    return torch.cat([X, middle]), torch.cat([Y, (true + 3 * Y.std()).reshape(1, 1)])


def test_a_point_with_noise_of_its_own_moves_the_model_less():
    X, Y = with_outlier(*smooth_data())
    middle, true = X[-1:], float(torch.sin(torch.tensor(1.5)) + 0.25)
    believed = CachedPosteriorGP(GPFitter().fit(X, Y))
    own = torch.zeros(len(X), 1, dtype=torch.float64)
    own[-1] = 4.0  # four times the values' variance: a forecast that says little
    doubted = CachedPosteriorGP(GPFitter().fit(X, Y, own))
    believed_mean = float(believed.mean_and_variance(middle)[0])
    doubted_mean = float(doubted.mean_and_variance(middle)[0])
    assert abs(doubted_mean - true) < 0.5 * abs(believed_mean - true)
    # the noise every point shares stays the fitted one, not the outlier's
    assert float(shared_noise(doubted.model.likelihood).detach()) < 0.05
    assert doubted.relative_noise() < 0.05


def test_hyperparameters_carry_over_whether_or_not_points_have_noise_of_their_own():
    X, Y = smooth_data()
    fitter = GPFitter()
    plain = fitter.fit(X, Y)
    own = torch.zeros(len(X), 1, dtype=torch.float64)
    own[0] = 1.0
    noisy = fitter.build(X, Y, own)  # the first fit's hyperparameters, a new likelihood
    assert torch.equal(noisy.covar_module.lengthscale, plain.covar_module.lengthscale)
    assert torch.equal(shared_noise(noisy.likelihood), shared_noise(plain.likelihood))
    assert float(noisy.likelihood.noise[0]) > float(noisy.likelihood.noise[1])
    refitted = fitter.fit(X, Y, own)  # a refit on the new likelihood, then back
    again = fitter.build(X, Y)
    assert torch.equal(again.covar_module.lengthscale, refitted.covar_module.lengthscale)


def test_the_cached_posterior_sees_each_points_own_noise():
    X, Y = with_outlier(*smooth_data())
    own = torch.linspace(0, 2, len(X), dtype=torch.float64).unsqueeze(-1)
    model = GPFitter().fit(X, Y, own)
    cached = CachedPosteriorGP(model)
    points = torch.rand(20, 1, 2, dtype=torch.float64)
    with torch.no_grad():
        reference = model.posterior(points)
        mean, variance = cached.mean_and_variance(points)
    assert torch.allclose(mean, reference.mean.squeeze(-1), atol=1e-9)
    assert torch.allclose(variance, reference.variance.squeeze(-1), rtol=1e-7)
