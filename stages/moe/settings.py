"""Every knob of the MoE trainer stage in one flat record, any of which may be searched."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .model import MoEConfig
from .parallel import ParallelConfig
from .trainer import TrainConfig


@dataclass(frozen=True)
class MoESettings:
    """Model shape, parallelism and training hyperparameters of the MoE trainer.

    ``parallel``: replicated, expert_parallel or fssdp; ``overlap_chunks`` > 1
    turns on Lancet's overlapped schedule; ``hot_factor``: FSSDP replicates
    experts loaded above this multiple of the mean; ``microbatching``:
    padding, packing or dynamic (DynaPipe); ``num_workers``: Ray Train workers.
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_hidden: int = 128
    n_experts: int = 4
    top_k: int = 1
    capacity_factor: float = 1.25
    parallel: str = "expert_parallel"
    overlap_chunks: int = 1
    hot_factor: float = 1.5
    num_workers: int = 2
    microbatching: str = "dynamic"
    steps: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    aux_weight: float = 0.01
    clip_norm: float = 1.0
    memory_cap_mb: float = 64.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.parallel != "replicated" and self.n_experts % self.num_workers:
            raise ValueError(
                f"{self.parallel}: n_experts={self.n_experts} is not a multiple of "
                f"num_workers={self.num_workers}"
            )
        # the parts check their own values
        self.model_config(vocab_size=300, max_len=16)
        self.train_config()
        self.parallel_config()

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def model_config(self, vocab_size: int, max_len: int) -> MoEConfig:
        return MoEConfig(
            vocab_size=vocab_size,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            d_hidden=self.d_hidden,
            n_experts=self.n_experts,
            top_k=self.top_k,
            capacity_factor=self.capacity_factor,
            max_len=max_len,
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            aux_weight=self.aux_weight,
            clip_norm=self.clip_norm,
            microbatching=self.microbatching,
            memory_cap_mb=self.memory_cap_mb,
            seed=self.seed,
        )

    def parallel_config(self) -> ParallelConfig:
        return ParallelConfig(self.parallel, chunks=self.overlap_chunks, hot_factor=self.hot_factor)

    def to_dict(self) -> dict:
        return asdict(self)
