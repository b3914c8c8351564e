"""Hecate's fully sharded sparse data parallelism (FSSDP) for the MoE layers.

Qing et al., "Hecate: Unlocking Efficient Sparse Model Training via Fully
Sharded Sparse Data Parallelism" (arXiv 2502.02581). Each expert's parameters
and optimizer state live on exactly one owner rank. Every iteration, from the
global expert loads, the experts carrying more than ``hot_factor`` times the
mean load are *materialized* on every rank:

- sparse all-gather: one broadcast per hot expert, from its owner;
- the hot experts' tokens are computed where they are (no all-to-all), the
  other experts' tokens go to their owner as in expert parallelism;
- the materialized copies are freed as soon as the forward pass has used
  them and re-materialized (broadcast again) in backward, where the expert
  computation is recomputed to get the gradients;
- sparse reduce-scatter: one reduce per hot expert, summing every rank's
  gradient into the owner's parameter.

So a hot expert's load is spread over all ranks instead of piling onto its
owner, without keeping replicas or their optimizer state between iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .dispatch import Assignments, ExpertParallelDispatch, MoERuntime
from .experts import expert_forward, run_grouped


def hot_experts(load: Tensor, hot_factor: float, max_hot: int | None = None) -> list[int]:
    """Experts whose load exceeds ``hot_factor`` × the mean expert load, busiest first
    up to ``max_hot``; returned in ascending id order."""
    counts = load.tolist()
    threshold = hot_factor * sum(counts) / len(counts)
    busiest_first = sorted(range(len(counts)), key=lambda e: (-counts[e], e))
    hot = [e for e in busiest_first if counts[e] > threshold]
    return sorted(hot if max_hot is None else hot[:max_hot])


def _global_rank(group: Any, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


@dataclass
class Materialization:
    """The hot experts of one layer call, and how to fetch and reduce their parameters."""

    runtime: MoERuntime
    hot: list[int]
    owners: list[int]
    shapes: list[torch.Size]

    @property
    def mine(self) -> list[int]:
        """Positions (in ``hot``) of the hot experts this rank owns."""
        rank = self.runtime.context.rank
        return [i for i, owner in enumerate(self.owners) if owner == rank]

    def gather(self, owned: list[Tensor], like: Tensor) -> list[list[Tensor]]:
        """Sparse all-gather: every rank gets every hot expert's parameters from its owner."""
        group = self.runtime.context.group
        numel = sum(s.numel() for s in self.shapes)
        per_expert = len(self.shapes)
        flat_owned = iter(owned[i : i + per_expert] for i in range(0, len(owned), per_expert))
        buffers, handles = [], []
        for owner in self.owners:
            if owner == self.runtime.context.rank:
                buffer = torch.cat([p.detach().reshape(-1) for p in next(flat_owned)])
            else:
                buffer = like.new_empty(numel)
            buffers.append(buffer)
            src = _global_rank(group, owner)
            handles.append(dist.broadcast(buffer, src=src, group=group, async_op=True))
        for handle in handles:
            handle.wait()
        materialized = sum(b.numel() * b.element_size() for b in buffers)
        self.runtime.replica_bytes_peak = max(self.runtime.replica_bytes_peak, materialized)
        return [self._unflatten(buffer) for buffer in buffers]

    def reduce(self, grads: list[list[Tensor]]) -> list[Tensor]:
        """Sparse reduce-scatter: sum each hot expert's gradient into its owner.

        Returns the summed gradients of the experts this rank owns, flattened in
        the order of :meth:`mine` then parameter order."""
        group = self.runtime.context.group
        buffers, handles = [], []
        for owner, expert_grads in zip(self.owners, grads, strict=True):
            buffer = torch.cat([g.reshape(-1) for g in expert_grads])
            buffers.append(buffer)
            dst = _global_rank(group, owner)
            handles.append(dist.reduce(buffer, dst=dst, group=group, async_op=True))
        for handle in handles:
            handle.wait()
        return [g for i in self.mine for g in self._unflatten(buffers[i])]

    def _unflatten(self, flat: Tensor) -> list[Tensor]:
        sizes = [s.numel() for s in self.shapes]
        return [
            part.view(shape) for part, shape in zip(flat.split(sizes), self.shapes, strict=True)
        ]


class _ReplicatedExperts(torch.autograd.Function):
    """Hot experts on materialized parameters; owned parameters are the inputs that
    receive the reduced gradients."""

    @staticmethod
    def forward(ctx: Any, plan: Materialization, rows: Tensor, index: Tensor, *owned: Tensor):
        params = plan.gather(list(owned), rows)
        fns = [partial(expert_forward, params=p) for p in params]
        with torch.no_grad():
            out = run_grouped(rows, index, fns)
        ctx.plan = plan
        ctx.save_for_backward(rows, index, *owned)  # not the replicas: they are freed here
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        plan: Materialization = ctx.plan
        rows, index, *owned = ctx.saved_tensors
        params = [[p.detach().requires_grad_() for p in ps] for ps in plan.gather(owned, rows)]
        rows = rows.detach().requires_grad_()
        with torch.enable_grad():
            out = run_grouped(rows, index, [partial(expert_forward, params=p) for p in params])
            flat_params = [p for ps in params for p in ps]
            grads = torch.autograd.grad(out, [rows, *flat_params], grad_out, allow_unused=True)
        grad_rows, param_grads = grads[0], grads[1:]
        param_grads = [
            torch.zeros_like(p) if g is None else g
            for p, g in zip(flat_params, param_grads, strict=True)
        ]
        n = len(plan.shapes)
        per_expert = [param_grads[i : i + n] for i in range(0, len(param_grads), n)]
        return (None, grad_rows, None, *plan.reduce(per_expert))


class FSSDPDispatch:
    """Hot experts materialized everywhere, the rest served by their owners."""

    def __init__(self, runtime: MoERuntime, n_experts: int) -> None:
        self.runtime = runtime
        self.n_experts = n_experts
        self.expert_parallel = ExpertParallelDispatch(runtime, n_experts)

    def __call__(self, x: Tensor, chosen: Assignments, experts: nn.ModuleDict) -> Tensor:
        ctx = self.runtime.context
        load = torch.bincount(chosen.expert, minlength=self.n_experts)
        dist.all_reduce(load, group=ctx.group)
        hot = hot_experts(load, ctx.config.hot_factor, ctx.config.max_hot)
        self.runtime.hot_history.append(hot)

        is_hot = torch.zeros(self.n_experts, dtype=torch.bool, device=x.device)
        is_hot[hot] = True
        local = torch.nonzero(is_hot[chosen.expert]).flatten()
        remote = torch.nonzero(~is_hot[chosen.expert]).flatten()

        out = x.new_zeros(len(chosen), x.shape[1])
        out = out.index_copy(0, remote, self.expert_parallel(x, chosen.select(remote), experts))
        if hot:
            out = out.index_copy(0, local, self._replicated(x, chosen.select(local), experts, hot))
        return out

    def _replicated(
        self, x: Tensor, chosen: Assignments, experts: nn.ModuleDict, hot: list[int]
    ) -> Tensor:
        ctx = self.runtime.context
        owners = [ctx.owner(e, self.n_experts) for e in hot]
        template = next(iter(experts.values()))
        plan = Materialization(self.runtime, hot, owners, [p.shape for p in template.params()])
        position = torch.full((self.n_experts,), -1, dtype=torch.long, device=x.device)
        position[hot] = torch.arange(len(hot), device=x.device)
        owned = [
            p
            for e, owner in zip(hot, owners, strict=True)
            if owner == ctx.rank
            for p in experts[str(e)].params()
        ]
        self.runtime.expert_rows += len(chosen)
        rows = x.index_select(0, chosen.token)
        return _ReplicatedExperts.apply(plan, rows, position[chosen.expert], *owned)
