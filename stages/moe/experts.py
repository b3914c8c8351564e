"""Experts: position-wise feed-forward blocks, one per expert (GShard, Switch).

An expert is ``w_out · gelu(w_in · x + b_in) + b_out``. The same function runs
on an expert's own parameters or on a materialized copy of them (FSSDP), and
with any linear implementation (``F.linear``, or Lancet's deferred linear).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Linear = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def expert_forward(x: Tensor, params: Sequence[Tensor], linear: Linear = F.linear) -> Tensor:
    """Apply an expert given its parameters ``(w_in, b_in, w_out, b_out)``."""
    w_in, b_in, w_out, b_out = params
    return linear(F.gelu(linear(x, w_in, b_in)), w_out, b_out)


class ExpertFFN(nn.Module):
    """One expert's parameters."""

    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__()
        self.w_in = nn.Parameter(torch.empty(d_hidden, d_model))
        self.b_in = nn.Parameter(torch.zeros(d_hidden))
        self.w_out = nn.Parameter(torch.empty(d_model, d_hidden))
        self.b_out = nn.Parameter(torch.zeros(d_model))

    def params(self) -> list[Tensor]:
        return [self.w_in, self.b_in, self.w_out, self.b_out]

    def forward(self, x: Tensor, linear: Linear = F.linear) -> Tensor:
        return expert_forward(x, self.params(), linear)


def run_grouped(
    x: Tensor, expert_index: Tensor, experts: Sequence[Callable[[Tensor], Tensor]]
) -> Tensor:
    """Apply ``experts[i]`` to the rows of ``x`` whose ``expert_index`` is ``i``.

    Rows come back in their original order; experts with no rows are not called.
    """
    if x.shape[0] == 0:
        return x * 0.0
    order = torch.argsort(expert_index, stable=True)
    sizes = torch.bincount(expert_index, minlength=len(experts)).tolist()
    grouped = x.index_select(0, order).split(sizes)
    outputs = [experts[i](part) for i, part in enumerate(grouped) if sizes[i] > 0]
    return torch.cat(outputs).index_select(0, torch.argsort(order))
