"""A small decoder-only transformer language model whose feed-forward blocks are MoE layers.

Each block is pre-norm causal self-attention followed by a pre-norm MoE layer.
A row may hold several samples (packing): tokens attend only within their own
sample (a block-diagonal causal mask), positions restart at each sample, and
padding (segment id -1) is neither routed to experts nor scored. The mask
saves no compute: a row still costs attention over its whole length, which is
what the micro-batch cost model charges.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .dispatch import MoERuntime
from .gating import check_routing
from .layer import MoELayer
from .parallel import ParallelContext


@dataclass(frozen=True)
class MoEConfig:
    """Shape of the MoE language model."""

    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_hidden: int = 128
    n_experts: int = 4
    top_k: int = 1
    capacity_factor: float | None = 1.25
    max_len: int = 256

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.d_model, self.n_heads, self.n_layers, self.d_hidden) < 1:
            raise ValueError("vocab_size, d_model, n_heads, n_layers and d_hidden must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        check_routing(self.n_experts, self.top_k, self.capacity_factor)

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        batch, length, d_model = x.shape
        head_dim = d_model // self.n_heads
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        return self.out(y.transpose(1, 2).reshape(batch, length, d_model))


class Block(nn.Module):
    def __init__(self, config: MoEConfig, runtime: MoERuntime) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(config.d_model)
        self.attn = Attention(config.d_model, config.n_heads)
        self.norm_moe = nn.LayerNorm(config.d_model)
        self.moe = MoELayer(
            config.d_model,
            config.d_hidden,
            config.n_experts,
            config.top_k,
            config.capacity_factor,
            runtime,
        )

    def forward(self, x: Tensor, allowed: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        x = x + self.attn(self.norm_attn(x), allowed)
        moe_out, aux = self.moe(self.norm_moe(x)[real])
        return x.index_put((real,), moe_out, accumulate=True), aux


class MoELM(nn.Module):
    """The MoE language model as this rank holds it (its own experts only)."""

    def __init__(self, config: MoEConfig, context: ParallelContext | None = None) -> None:
        super().__init__()
        self.config = config
        self.runtime = MoERuntime(context or ParallelContext())
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config, self.runtime) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, tokens: Tensor, segments: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``[B, L, V]`` and the mean load-balancing loss over the MoE layers.

        ``segments`` numbers the samples of each row (-1 is padding); ``positions``
        restart at 0 for each sample.
        """
        real = segments >= 0
        same = segments[:, :, None] == segments[:, None, :]
        causal = torch.ones(
            tokens.shape[1], tokens.shape[1], dtype=torch.bool, device=tokens.device
        )
        allowed = same & causal.tril()
        x = self.embed(tokens) + self.position(positions.clamp(max=self.config.max_len - 1))
        aux_total = x.new_zeros(())
        for block in self.blocks:
            x, aux = block(x, allowed, real)
            aux_total = aux_total + aux
        return self.head(self.norm(x)), aux_total / len(self.blocks)

    @contextmanager
    def capacity_factor(self, factor: float | None) -> Iterator[None]:
        """Route with another capacity factor inside the block (``None``: drop nothing)."""
        routers = [block.moe.router for block in self.blocks]
        saved = [router.capacity_factor for router in routers]
        for router in routers:
            router.capacity_factor = factor
        try:
            yield
        finally:
            for router, old in zip(routers, saved, strict=True):
                router.capacity_factor = old

    def expert_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if ".experts." in n]

    def dense_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if ".experts." not in n]


def init_parameters(model: nn.Module, seed: int) -> None:
    """Initialise every parameter from a generator seeded by ``(seed, its name)``.

    An expert gets the same weights whichever rank holds it, so sharded models
    and the single-process reference start identical.
    """
    norm_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    with torch.no_grad():
        for name, param in model.named_parameters():
            generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
            if param.dim() >= 2:
                value = torch.randn(param.shape, generator=generator, dtype=torch.float64) * 0.02
            elif id(param) in norm_weights:
                value = torch.ones(param.shape, dtype=torch.float64)
            else:
                value = torch.zeros(param.shape, dtype=torch.float64)
            param.copy_(value)
