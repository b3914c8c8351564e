"""Top-k gating with expert capacity, as in GShard, Switch Transformer and DeepSpeed-MoE.

- Router: a bias-free linear map to ``E`` logits and a softmax over experts.
- Top-k routing (k = 1 as in Switch, k = 2 as in GShard): each token picks its
  ``k`` most probable experts. With k = 1 the combine weight is the chosen
  probability (Switch); with k > 1 the chosen probabilities are renormalised
  to sum to one (GShard).
- Capacity: an expert takes at most ``ceil(k·T/E · capacity_factor)`` of the
  group's ``T`` tokens. Tokens are admitted by position: all first choices in
  token order, then all second choices (GShard's ``locations2 += sum(mask1)``);
  an assignment past capacity is dropped (weight 0, the residual carries the
  token).
- Load-balancing loss: ``E · Σ_e mean_prob_e · fraction_e``, where
  ``fraction_e`` counts all ``k`` choices (before dropping) and is divided by
  ``k``, so a perfectly balanced router scores 1 for any k (the ``/k`` scaling
  of DeepSpeed-MoE's top-k gate; Switch's loss when k = 1).

References: Lepikhin et al., GShard (arXiv 2006.16668); Fedus et al., Switch
Transformer (arXiv 2101.03961); Rajbhandari et al., DeepSpeed-MoE (arXiv 2201.05596).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def expert_capacity(tokens: int, n_experts: int, top_k: int, capacity_factor: float | None) -> int:
    """``ceil(k·T/E · capacity_factor)``; ``None`` means no limit (no token is dropped)."""
    if capacity_factor is None:
        return tokens * top_k
    return math.ceil(top_k * tokens / n_experts * capacity_factor)


def check_routing(n_experts: int, top_k: int, capacity_factor: float | None) -> None:
    """Raise a one-line ``ValueError`` for routing settings that cannot work."""
    if top_k not in (1, 2):
        raise ValueError(f"top_k must be 1 or 2, got {top_k}")
    if top_k > n_experts:
        raise ValueError(f"top_k={top_k} needs at least {top_k} experts, got {n_experts}")
    if capacity_factor is not None and capacity_factor <= 0:
        raise ValueError(f"capacity_factor must be > 0 (or None), got {capacity_factor}")


@dataclass
class Routing:
    """Where each of ``T`` tokens goes: ``k`` choices per token."""

    expert: Tensor  # [T, k] global expert ids
    weight: Tensor  # [T, k] combine weights; 0 where the assignment was dropped
    kept: Tensor  # [T, k] bool: the assignment fits its expert's capacity
    aux_loss: Tensor  # scalar load-balancing loss
    capacity: int
    n_experts: int

    @property
    def load(self) -> Tensor:
        """Kept assignments per expert, ``[E]``."""
        return torch.bincount(self.expert[self.kept], minlength=self.n_experts)


class TopKRouter(nn.Module):
    """Routes tokens to ``top_k`` of ``n_experts`` experts under a capacity limit."""

    def __init__(
        self, d_model: int, n_experts: int, top_k: int = 1, capacity_factor: float | None = 1.25
    ) -> None:
        super().__init__()
        check_routing(n_experts, top_k, capacity_factor)
        self.n_experts = n_experts
        self.top_k = top_k
        self.capacity_factor = capacity_factor
        self.proj = nn.Linear(d_model, n_experts, bias=False)

    def forward(self, x: Tensor) -> Routing:
        """Route the tokens ``x`` (``[T, d_model]``), one GShard group."""
        probs = torch.softmax(self.proj(x), dim=-1)
        return route(probs, self.top_k, self.capacity_factor)


def route(probs: Tensor, top_k: int, capacity_factor: float | None) -> Routing:
    """Top-k routing with position-based dropping from router probabilities ``[T, E]``."""
    tokens, n_experts = probs.shape
    capacity = expert_capacity(tokens, n_experts, top_k, capacity_factor)
    top_probs, expert = probs.topk(top_k, dim=-1)
    weight = top_probs if top_k == 1 else top_probs / top_probs.sum(-1, keepdim=True)

    kept = torch.zeros_like(expert, dtype=torch.bool)
    admitted = torch.zeros(n_experts, dtype=torch.long, device=probs.device)
    for choice in range(top_k):
        onehot = nn.functional.one_hot(expert[:, choice], n_experts)
        position = (onehot.cumsum(0) - 1 + admitted)[torch.arange(tokens), expert[:, choice]]
        kept[:, choice] = position < capacity
        admitted = admitted + (onehot * kept[:, choice, None]).sum(0)
    weight = weight * kept

    return Routing(
        expert=expert,
        weight=weight,
        kept=kept,
        aux_loss=load_balancing_loss(probs, expert, top_k),
        capacity=capacity,
        n_experts=n_experts,
    )


def load_balancing_loss(probs: Tensor, expert: Tensor, top_k: int) -> Tensor:
    """``E · Σ_e mean_prob_e · fraction_e``, fraction over all ``k`` choices divided by ``k``."""
    tokens, n_experts = probs.shape
    if tokens == 0:
        return probs.sum() * 0.0  # keeps the graph (and its collectives) alive for empty groups
    routed = torch.bincount(expert.flatten(), minlength=n_experts).to(probs.dtype)
    fraction = routed / (tokens * top_k)
    return n_experts * (probs.mean(0) * fraction).sum()
