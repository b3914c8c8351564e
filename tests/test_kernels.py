import torch

from memotune.tuner.kernels import shared_output_ends
from memotune.tuner.models import GPFitter


def clustered(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """36 trials on 6 cached first-stage outputs (2 columns), each output adding its own
    offset to a smooth objective of all 5 columns; returns X, Y and the offsets."""
    generator = torch.Generator().manual_seed(seed)
    heads = torch.rand(6, 2, generator=generator, dtype=torch.float64)
    offsets = 0.7 * torch.randn(6, generator=generator, dtype=torch.float64)
    X = torch.rand(36, 5, generator=generator, dtype=torch.float64)
    X[:, :2] = heads.repeat_interleave(6, 0)
    noise = 0.05 * torch.randn(36, generator=generator, dtype=torch.float64)
    Y = torch.sin(3 * X).sum(-1) + offsets.repeat_interleave(6) + noise
    return X, Y.unsqueeze(-1), offsets


def test_shared_output_ends_cover_each_reused_stage_block():
    # stage 1 has no settings of its own, the last stage's block is the whole row
    assert shared_output_ends([2, 2, 5, 7]) == [2, 5]
    assert shared_output_ends([0, 3]) == []  # a first stage without settings shares nothing


def test_shared_effects_keep_the_first_stage_smooth():
    """Without the shared effects the GP explains the outputs' offsets by a short
    lengthscale in the first stage's settings; with them, those settings stay smooth and
    the effects carry the offsets' share of the variance."""
    X, Y, offsets = clustered()
    plain = GPFitter().fit(X, Y).covar_module.lengthscale.detach().reshape(-1)
    kernel = GPFitter(shared_outputs=[2]).fit(X, Y).covar_module
    shared = kernel.base.lengthscale.detach().reshape(-1)
    assert float(plain[:2].min()) < 0.5
    assert float(shared[:2].min()) > 2 * float(plain[:2].min())
    share = float(kernel.shares.detach()[0])
    assert 0.05 < share < 1.0, share  # the offsets' variance over Y's: about 0.2
