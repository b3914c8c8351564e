"""The MoE feed-forward layer: router, this rank's experts, and a dispatcher for the mode."""

from __future__ import annotations

from torch import Tensor, nn

from .dispatch import ExpertParallelDispatch, LocalDispatch, MoERuntime, assignments, combine
from .experts import ExpertFFN
from .fssdp import FSSDPDispatch
from .gating import TopKRouter


class MoELayer(nn.Module):
    """``y = Σ_k weight_k · expert_k(x)`` over each token's kept assignments.

    ``experts`` holds only the experts this rank owns, keyed by their global id,
    so parameter names (and a seeded initialisation) are the same in every mode.
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        n_experts: int,
        top_k: int,
        capacity_factor: float | None,
        runtime: MoERuntime,
    ) -> None:
        super().__init__()
        context = runtime.context
        context.check_experts(n_experts)
        self.router = TopKRouter(d_model, n_experts, top_k, capacity_factor)
        self.experts = nn.ModuleDict(
            {str(e): ExpertFFN(d_model, d_hidden) for e in context.owned(n_experts)}
        )
        if not context.shards_experts:
            self.dispatch = LocalDispatch(runtime)
        elif context.mode == "expert_parallel":
            self.dispatch = ExpertParallelDispatch(runtime, n_experts)
        else:
            self.dispatch = FSSDPDispatch(runtime, n_experts)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x``: ``[T, d_model]`` tokens (one routing group). Returns the output and aux loss."""
        routing = self.router(x)
        chosen = assignments(routing)
        rows = self.dispatch(x, chosen, self.experts)
        return combine(x, chosen, rows), routing.aux_loss
