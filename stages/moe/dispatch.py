"""Moving tokens to their experts and back: the replicated and expert-parallel layouts.

A layer's routing becomes a list of *assignments* (token, expert, weight),
sorted by expert. A dispatcher returns one expert output row per assignment;
:func:`combine` sums the weighted rows back into the tokens.

- :class:`LocalDispatch` runs every expert in this process (replicated mode,
  and the single-process reference).
- :class:`ExpertParallelDispatch` sends each assignment's token to the rank
  that owns its expert: counts first (one small even all-to-all), then the
  rows with an uneven ``all_to_all_single``, and the outputs back the same way
  (GShard; DeepSpeed-MoE). With ``chunks > 1`` it runs Lancet's overlapped
  schedule: the assignments are cut into chunks of consecutive tokens, the
  dispatch of chunk ``c+1`` is in flight while chunk ``c``'s experts compute,
  and in backward the experts' weight gradients are computed while the
  gradient all-to-all is in flight (see :mod:`.comm`, :mod:`.deferred`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import comm
from .comm import CommStats, Transfer
from .deferred import WeightGradQueue, deferred_linear
from .experts import Linear, run_grouped
from .gating import Routing
from .parallel import ParallelContext


@dataclass
class MoERuntime:
    """What the MoE layers of one model share on one rank: the parallel context,
    communication statistics, the deferred weight-gradient queue, load counters."""

    context: ParallelContext = field(default_factory=ParallelContext)
    stats: CommStats = field(default_factory=CommStats)
    queue: WeightGradQueue = field(default_factory=WeightGradQueue)
    expert_rows: int = 0  # assignments this rank's experts computed since the last reset
    replica_bytes_peak: int = 0  # largest set of FSSDP replicas materialized at once
    hot_history: list[list[int]] = field(default_factory=list)  # FSSDP's hot experts per layer call

    @property
    def linear(self) -> Linear:
        """The experts' linear map: deferred weight gradients under the overlapped schedule."""
        if self.context.config.overlapped and self.context.shards_experts:
            return partial(deferred_linear, queue=self.queue)
        return F.linear

    def reset_counters(self) -> None:
        self.stats.reset()
        self.expert_rows = 0
        self.replica_bytes_peak = 0
        self.hot_history.clear()


@dataclass
class Assignments:
    """Kept (token, expert) pairs of one layer call, sorted by expert (then token)."""

    token: Tensor  # [A] index of the token in the layer's input
    expert: Tensor  # [A] global expert id
    weight: Tensor  # [A] combine weight

    def __len__(self) -> int:
        return int(self.token.shape[0])

    def select(self, index: Tensor) -> Assignments:
        return Assignments(self.token[index], self.expert[index], self.weight[index])


def assignments(routing: Routing) -> Assignments:
    """The kept assignments of ``routing``, sorted by expert (stable: token order within)."""
    token = torch.arange(routing.expert.shape[0], device=routing.expert.device)
    token = token[:, None].expand_as(routing.expert)[routing.kept]
    expert = routing.expert[routing.kept]
    weight = routing.weight[routing.kept]
    order = torch.argsort(expert, stable=True)
    return Assignments(token[order], expert[order], weight[order])


def combine(x: Tensor, chosen: Assignments, rows: Tensor) -> Tensor:
    """Sum each token's weighted expert outputs (tokens with no kept assignment get 0)."""
    weighted = rows * chosen.weight[:, None].to(rows.dtype)
    return torch.zeros_like(x).index_add(0, chosen.token, weighted)


def expert_functions(
    experts: nn.ModuleDict, ids: list[int], linear: Linear
) -> list[Callable[[Tensor], Tensor]]:
    return [partial(experts[str(e)], linear=linear) for e in ids]


class LocalDispatch:
    """Every expert is in this process: no communication."""

    def __init__(self, runtime: MoERuntime) -> None:
        self.runtime = runtime

    def __call__(self, x: Tensor, chosen: Assignments, experts: nn.ModuleDict) -> Tensor:
        ids = sorted(int(e) for e in experts)
        position = torch.full((max(ids) + 1,), -1, dtype=torch.long, device=x.device)
        position[ids] = torch.arange(len(ids), device=x.device)
        self.runtime.expert_rows += len(chosen)
        fns = expert_functions(experts, ids, self.runtime.linear)
        return run_grouped(x.index_select(0, chosen.token), position[chosen.expert], fns)


class ExpertParallelDispatch:
    """Tokens travel to the rank that owns their expert and back (uneven all-to-all)."""

    def __init__(self, runtime: MoERuntime, n_experts: int) -> None:
        self.runtime = runtime
        self.n_experts = n_experts

    def __call__(self, x: Tensor, chosen: Assignments, experts: nn.ModuleDict) -> Tensor:
        ctx = self.runtime.context
        world, n_chunks = ctx.world, ctx.config.chunks
        per_rank = self.n_experts // world

        chunk = (chosen.token * n_chunks) // max(x.shape[0], 1)
        order = torch.argsort(chunk * self.n_experts + chosen.expert, stable=True)
        counts = torch.bincount(
            (chunk * self.n_experts + chosen.expert)[order], minlength=n_chunks * self.n_experts
        ).view(n_chunks, world, per_rank)
        received = comm.exchange_counts(
            counts.permute(1, 0, 2).reshape(world, n_chunks * per_rank), ctx.group
        ).view(world, n_chunks, per_rank)
        send_counts, recv_counts = counts.tolist(), received.tolist()

        rows = x.index_select(0, chosen.token[order])
        send_sizes = [[sum(per_dest) for per_dest in counts_c] for counts_c in send_counts]
        chunk_rows = rows.split([sum(sizes) for sizes in send_sizes])
        local_ids = torch.arange(per_rank, device=x.device).repeat(world)
        fns = expert_functions(experts, ctx.owned(self.n_experts), self.runtime.linear)
        queue = self.runtime.queue if ctx.config.overlapped else None

        transfers, buffers, returning = [], [], []
        for c in range(n_chunks):
            recv_sizes = [sum(received_from[c]) for received_from in recv_counts]
            transfers.append(
                Transfer(
                    send_sizes[c],
                    recv_sizes,
                    ctx.group,
                    self.runtime.stats,
                    queue,
                    f"dispatch c{c}",
                )
            )
        buffers.append(comm.start(chunk_rows[0], transfers[0]))
        for c in range(n_chunks):
            if c + 1 < n_chunks:  # the next chunk travels while this one computes
                buffers.append(comm.start(chunk_rows[c + 1], transfers[c + 1]))
            arrived = comm.finish(buffers[c], transfers[c])
            per_expert = received[:, c, :].reshape(-1)
            expert_index = torch.repeat_interleave(local_ids, per_expert.to(x.device))
            self.runtime.expert_rows += int(arrived.shape[0])
            self.runtime.stats.note(f"compute c{c}")
            outputs = run_grouped(arrived, expert_index, fns)
            back = Transfer(
                transfers[c].recv_splits, transfers[c].send_splits, ctx.group,
                self.runtime.stats, queue, f"return c{c}",
            )  # fmt: skip
            returning.append((comm.start(outputs, back), back))
        sorted_out = torch.cat([comm.finish(buffer, back) for buffer, back in returning])
        return sorted_out.index_select(0, torch.argsort(order))
