"""Random search: independent uniform draws over the encoded space."""

from __future__ import annotations

import torch

from .base import Config, Proposal, Tuner
from .budget import PHASE, Budget
from .encoding import SpaceEncoder


class RandomSearch(Tuner):
    """Uniform in the unit cube (so log-scaled parameters are log-uniform)."""

    name = "random"

    def __init__(self, pipeline, **options) -> None:
        super().__init__(pipeline, **options)
        self.encoder = SpaceEncoder(pipeline)

    def _propose(self, pending: list[Config], budget: Budget) -> Proposal:
        index = self.told + len(pending)  # the same draws after a resume
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        row = torch.rand(self.encoder.dim, generator=generator, dtype=torch.float64)
        return Proposal(self.encoder.decode(row), {PHASE: "random"})
