"""How a rank takes part in training: its mode, its rank and world, and which experts it owns.

Modes:

- ``replicated``: every rank holds every expert; all gradients are all-reduced.
- ``expert_parallel``: experts are split into contiguous blocks, one block per
  rank; tokens travel to their expert's rank by all-to-all (GShard,
  DeepSpeed-MoE). Dense gradients are all-reduced, expert gradients are not.
- ``fssdp``: Hecate's fully sharded sparse data parallelism (Qing et al.,
  arXiv 2502.02581). Each expert's parameters and optimizer state live on one
  owner rank only; each iteration the heavily loaded ("hot") experts are
  materialized on every rank and their tokens stay where they are, the rest
  are served by their owner as in expert parallelism. See :mod:`.fssdp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

MODES = ("replicated", "expert_parallel", "fssdp")


@dataclass(frozen=True)
class ParallelConfig:
    """Settings of the MoE parallelism.

    ``chunks``: the overlapped schedule splits each layer's dispatch into this
    many chunks and defers weight gradients (Lancet); 1 is the plain schedule.
    ``hot_factor``: under FSSDP an expert whose global load exceeds this
    multiple of the mean expert load is replicated to all ranks for the
    iteration; ``max_hot`` caps how many are (None: no cap).
    """

    mode: str = "replicated"
    chunks: int = 1
    hot_factor: float = 1.5
    max_hot: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"parallel mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.chunks < 1:
            raise ValueError(f"overlap chunks must be >= 1, got {self.chunks}")
        if self.hot_factor <= 0:
            raise ValueError(f"hot_factor must be > 0, got {self.hot_factor}")

    @property
    def overlapped(self) -> bool:
        return self.chunks > 1


@dataclass(frozen=True)
class ParallelContext:
    """This rank's place in the process group (``group=None`` is the default group)."""

    config: ParallelConfig = ParallelConfig()
    rank: int = 0
    world: int = 1
    group: Any = None

    @classmethod
    def from_process_group(cls, config: ParallelConfig, group: Any = None) -> ParallelContext:
        """The context of this process in an initialised ``torch.distributed`` group."""
        if not dist.is_initialized():
            return cls(config)
        return cls(config, dist.get_rank(group), dist.get_world_size(group), group)

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def shards_experts(self) -> bool:
        return self.config.mode != "replicated" and self.world > 1

    def check_experts(self, n_experts: int) -> None:
        if self.shards_experts and n_experts % self.world:
            raise ValueError(
                f"{self.config.mode}: {n_experts} experts cannot be split evenly over "
                f"{self.world} ranks (use a multiple of {self.world})"
            )

    def owner(self, expert: int, n_experts: int) -> int:
        """The rank that holds ``expert`` (contiguous blocks of experts per rank)."""
        if not self.shards_experts:
            return self.rank
        return expert // (n_experts // self.world)

    def owned(self, n_experts: int) -> list[int]:
        """Global ids of the experts this rank holds."""
        if not self.shards_experts:
            return list(range(n_experts))
        per_rank = n_experts // self.world
        return list(range(self.rank * per_rank, (self.rank + 1) * per_rank))
