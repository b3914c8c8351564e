"""A kernel that knows trials built on one cached stage output share it.

Reusing a cached prefix freezes whatever its training made of it: two trials
on one cached teacher share that teacher's luck, good or bad, while a new
teacher with nearly the same settings draws its own. A stationary kernel can
only explain a cluster of trials that all did well on one cached output by
making the objective change fast with that stage's settings (a short
lengthscale), and then predicts that moving away from those settings is
costly. ``SharedOutputKernel`` gives the GP a better explanation: for each
stage whose output later stages reuse, a random effect shared by exactly the
trials with the same settings of stages ``0..k`` (hence the same cached
output)::

    k(x, x') = k_base(x, x') + Σ_k c_k · [x and x' agree on the columns of stages 0..k]

Each ``c_k`` is a fitted hyperparameter (the share of the prior variance that
stage k's outputs carry on their own); a candidate on a cached prefix inherits
that prefix's effect, a fresh one does not.

Each fit starts the shares afresh (:meth:`SharedOutputKernel.restart_shares`)
while the other hyperparameters start where the last fit left them. Started
where they were, shares fitted on the warm-up (where no two trials share an
output, so nothing tells them from noise) stayed near zero, and the
lengthscales went on explaining the clusters: a worse optimum of the marginal
likelihood (docs/benchmarks.md, "The kernel over stage outputs").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from gpytorch.constraints import Interval
from gpytorch.kernels import Kernel
from gpytorch.priors import LogNormalPrior

#: Columns this close count as the same setting (encodings of one configuration agree exactly).
SAME_SETTING_TOLERANCE = 1e-9
#: The prior on each stage's share: median 0.05 of the standardized prior variance,
#: 95% of its mass between about 0.003 and 0.95.
SHARE_PRIOR = (math.log(0.05), 1.5)
#: Where each fit starts the shares: the prior's median.
SHARE_START = 0.05
#: Each share stays within these bounds: no stage output's own effect outweighs the
#: whole smooth part (of prior variance 1), and none vanishes to a log prior of −∞
#: (a study on language crashed when a share fell to 0.0 and another rose to 521).
SHARE_BOUNDS = (1e-4, 1.0)


class SharedOutputKernel(Kernel):
    """``base`` plus one shared random effect per stage output (see the module)."""

    def __init__(self, base: Kernel, ends: Sequence[int]) -> None:
        super().__init__()
        self.base = base
        #: ``ends[j]``: one past the last column of the stage block the j-th effect covers.
        self.ends = list(ends)
        self.register_parameter("raw_shares", torch.nn.Parameter(torch.zeros(len(self.ends))))
        self.register_constraint("raw_shares", Interval(*SHARE_BOUNDS))
        self.register_prior(
            "shares_prior",
            LogNormalPrior(*SHARE_PRIOR),
            lambda module: module.shares,
            lambda module, value: module._set_shares(value),
        )
        self.restart_shares()

    def restart_shares(self) -> None:
        """Start the shares at ``SHARE_START`` (before a fit)."""
        self._set_shares(torch.full((len(self.ends),), SHARE_START))

    @property
    def shares(self) -> torch.Tensor:
        return self.raw_shares_constraint.transform(self.raw_shares)

    def _set_shares(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value).to(self.raw_shares)
        self.initialize(raw_shares=self.raw_shares_constraint.inverse_transform(value))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params):
        covariance = self.base.forward(x1, x2, diag=diag, **params)
        if diag:
            return covariance + self.shares.sum()
        return covariance + shared_effects(x1, x2, self.ends, self.shares)


def shared_effects(
    x1: torch.Tensor, x2: torch.Tensor, ends: Sequence[int], shares: torch.Tensor
) -> torch.Tensor:
    """``Σ_j shares[j] · [x1, x2 agree on columns :ends[j]]``, shape ``... × n1 × n2``."""
    if not ends:
        return torch.zeros(*x1.shape[:-1], x2.shape[-2], dtype=x1.dtype)
    gap = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).abs()  # ... × n1 × n2 × d
    # the largest gap over columns :end, for every end at once
    widest = gap.cummax(-1).values[..., [end - 1 for end in ends]]
    return (widest <= SAME_SETTING_TOLERANCE).to(x1.dtype) @ shares.to(x1.dtype)


def shared_output_ends(stage_end: Sequence[int]) -> list[int]:
    """The column blocks whose outputs later stages reuse: stages ``0..k`` for each stage
    k with settings of its own, except where no later stage has any (sharing every
    column is being the same configuration, which the noise already models)."""
    dim = stage_end[-1] if stage_end else 0
    ends, previous = [], 0
    for end in stage_end:
        if previous < end < dim:
            ends.append(end)
        previous = end
    return ends
