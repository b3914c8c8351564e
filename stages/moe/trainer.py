"""Training the MoE language model on one worker of a process group.

Every rank builds the model from the same seed (holding only its own experts
when they are sharded), takes its share of each global batch, plans its
micro-batches (padding, packing or dynamic), and accumulates gradients over
them. Ranks that planned fewer micro-batches run empty ones, so every rank
joins every all-to-all. The loss is the mean next-token loss over the
global batch plus ``aux_weight`` times the load-balancing loss.

Dense gradients are summed over ranks in one flat all-reduce after backward
(every gradient in ``replicated`` mode); expert gradients are not reduced
when experts are sharded: each rank holds and updates its own. Gradient
clipping uses the global norm, experts included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn import functional as F

from .batching import IGNORE, Batch, collate, empty_batch
from .dispatch import MoERuntime
from .microbatch import MODES as MICROBATCHING
from .microbatch import CostModel, Plan, make_plan
from .model import MoEConfig, MoELM, init_parameters
from .parallel import ParallelContext

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters. ``batch_size`` counts samples per step over all ranks;
    ``memory_cap_mb`` is a micro-batch's activation budget under the cost model."""

    steps: int = 100
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    aux_weight: float = 0.01
    clip_norm: float = 1.0
    microbatching: str = "dynamic"
    memory_cap_mb: float = 64.0
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.microbatching not in MICROBATCHING:
            raise ValueError(
                f"microbatching must be one of {', '.join(MICROBATCHING)}, "
                f"got {self.microbatching!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"need steps >= 1 and batch_size >= 1, got {self.steps}, {self.batch_size}"
            )
        if self.lr <= 0 or self.aux_weight < 0 or self.memory_cap_mb <= 0:
            raise ValueError("need lr > 0, aux_weight >= 0 and memory_cap_mb > 0")


@dataclass
class StepStats:
    """One training step, seen from this rank (``loss`` is the global mean)."""

    step: int
    loss: float
    aux_loss: float
    lr: float
    seconds: float
    comm_wait_seconds: float
    comm_in_flight_seconds: float
    micro_batches: int
    expert_rows: int


class MoETrainer:
    """The model, optimizer and micro-batch planner of one rank."""

    def __init__(
        self,
        model_config: MoEConfig,
        train_config: TrainConfig,
        context: ParallelContext | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = train_config
        self.context = context or ParallelContext()
        self.device = torch.device(device)
        dtype = DTYPES[train_config.dtype]
        self.model = MoELM(model_config, self.context)
        init_parameters(self.model, train_config.seed)
        self.model.to(device=self.device, dtype=dtype)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.cost = CostModel.for_transformer(
            model_config.d_model,
            model_config.n_layers,
            model_config.d_hidden,
            model_config.top_k,
            model_config.vocab_size,
            model_config.n_heads,
            bytes_per_value=torch.finfo(dtype).bits // 8,
        )
        self.memory_cap = train_config.memory_cap_mb * 2**20
        sharded = self.context.shards_experts
        self.reduced = self.model.dense_parameters() if sharded else list(self.model.parameters())
        self.step_count = 0

    @property
    def runtime(self) -> MoERuntime:
        return self.model.runtime

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to a tenth."""
        warmup = max(1, self.config.warmup_steps)
        progress = min(1.0, step / max(1, self.config.steps))
        return min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))

    def plan(self, lengths: Sequence[int]) -> Plan:
        return make_plan(self.config.microbatching, lengths, self.cost, self.memory_cap)

    def micro_batches(self, samples: Sequence[np.ndarray]) -> list[Batch]:
        """This rank's micro-batches, padded with empty ones to the most any rank has."""
        batches = []
        if samples:
            plan = self.plan([len(s) for s in samples])
            batches = [collate(mb, samples) for mb in plan.micro_batches]
        most = self._all_reduce(torch.tensor([len(batches)]), dist.ReduceOp.MAX)
        return batches + [empty_batch() for _ in range(int(most) - len(batches))]

    def train_step(self, samples: Sequence[np.ndarray]) -> StepStats:
        """One optimizer step on this rank's share ``samples`` of the global batch."""
        began = time.perf_counter()
        self.model.train()
        self.runtime.reset_counters()
        batches = self.micro_batches(samples)
        targets = self._all_reduce(torch.tensor([sum(b.n_targets for b in batches)]))
        scale = 1.0 / max(int(targets), 1)
        aux_scale = self.config.aux_weight / (len(batches) * self.context.world)
        nll_sum, aux_sum = 0.0, 0.0
        for batch in batches:
            nll, aux = self._forward(batch)
            (nll * scale + aux * aux_scale).backward()
            self.runtime.queue.flush()  # weight gradients no transfer was left to hide
            nll_sum += float(nll.detach())
            aux_sum += float(aux.detach())
        self._reduce_gradients()
        self._clip_gradients()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.step_count += 1
        totals = self._all_reduce(torch.tensor([nll_sum, aux_sum], dtype=torch.float64))
        return StepStats(
            step=self.step_count,
            loss=float(totals[0]) * scale,
            aux_loss=float(totals[1]) / (len(batches) * self.context.world),
            lr=lr,
            seconds=time.perf_counter() - began,
            comm_wait_seconds=self.runtime.stats.wait,
            comm_in_flight_seconds=self.runtime.stats.in_flight,
            micro_batches=len(batches),
            expert_rows=self.runtime.expert_rows,
        )

    @torch.no_grad()
    def evaluate(
        self, samples: Sequence[np.ndarray], capacity_factor: float | None = None
    ) -> dict[str, float]:
        """Mean next-token loss and perplexity over every rank's ``samples``.

        Evaluation routes with ``capacity_factor`` (default: none, so no token is
        dropped and the result does not depend on how samples are grouped)."""
        self.model.eval()
        nll_sum, count = 0.0, 0
        with self.model.capacity_factor(capacity_factor):
            for batch in self.micro_batches(samples):
                nll, _ = self._forward(batch)
                nll_sum += float(nll)
                count += batch.n_targets
        totals = self._all_reduce(torch.tensor([nll_sum, float(count)], dtype=torch.float64))
        loss = float(totals[0] / max(float(totals[1]), 1.0))
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": float(totals[1])}

    def _forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        batch = batch.to(self.device)
        logits, aux = self.model(batch.tokens, batch.segments, batch.positions)
        nll = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            batch.targets.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        )
        return nll, aux

    def _all_reduce(self, values: Tensor, op: Any = dist.ReduceOp.SUM) -> Tensor:
        if not self.context.distributed:
            return values
        values = values.to(self.device)
        dist.all_reduce(values, op=op, group=self.context.group)
        return values.cpu()

    def _reduce_gradients(self) -> None:
        """Sum the replicated parameters' gradients over ranks (one flat all-reduce)."""
        if not self.context.distributed:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.reduced]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, group=self.context.group)
        for param, part in zip(self.reduced, flat.split([g.numel() for g in grads]), strict=True):
            param.grad = part.view_as(param)

    def _clip_gradients(self) -> None:
        """Scale all gradients so that their global norm is at most ``clip_norm``."""
        if not self.config.clip_norm:
            return
        squares = [
            p.grad.detach().double().square().sum() for p in self.reduced if p.grad is not None
        ]
        total = torch.stack(squares).sum() if squares else torch.zeros((), dtype=torch.float64)
        if self.context.shards_experts:
            experts = [
                p.grad.double().square().sum()
                for p in self.model.expert_parameters()
                if p.grad is not None
            ]
            local = torch.stack(experts).sum() if experts else torch.zeros((), dtype=torch.float64)
            total = total.cpu() + self._all_reduce(local.reshape(1).cpu())[0]
        factor = self.config.clip_norm / (float(total) ** 0.5 + 1e-6)
        if factor < 1.0:
            for param in self.model.parameters():
                if param.grad is not None:
                    param.grad.mul_(factor)

    def state_bytes(self) -> int:
        """Parameter plus optimizer-state bytes held by this rank."""
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        state = sum(
            v.numel() * v.element_size()
            for s in self.optimizer.state.values()
            for v in s.values()
            if torch.is_tensor(v)
        )
        return params + state

    def optimizer_experts(self) -> list[int]:
        """Global ids of the experts whose optimizer state this rank holds."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        held = [names[id(p)] for p in self.optimizer.state]
        return sorted(
            {int(n.split(".experts.")[1].split(".")[0]) for n in held if ".experts." in n}
        )

    def full_state_dict(self) -> dict[str, Tensor]:
        """Every parameter of the model, experts gathered from their owners (on the CPU)."""
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if not self.context.shards_experts:
            return state
        mine = {k: v for k, v in state.items() if ".experts." in k}
        gathered: list[Any] = [None] * self.context.world
        dist.all_gather_object(gathered, mine, group=self.context.group)
        for part in gathered:
            state.update(part)
        return dict(sorted(state.items()))

    def rank_state(self) -> dict[str, Any]:
        """What this rank needs to resume: its parameters, optimizer and schedule."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step_count,
        }

    def load_rank_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_count = int(state["step"])


def step_samples(
    n_samples: int, batch_size: int, seed: int, step: int, rank: int, world: int
) -> np.ndarray:
    """Rank ``rank``'s share of global batch ``step``: the same draw on every rank."""
    chosen = np.random.default_rng([seed, step]).choice(
        n_samples, min(batch_size, n_samples), replace=False
    )
    return chosen[rank::world]


@dataclass
class TrainingRun:
    """What :func:`train` returns on each rank."""

    history: list[StepStats] = field(default_factory=list)
    valid: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def train(
    trainer: MoETrainer,
    train_samples: Sequence[np.ndarray],
    valid_samples: Sequence[np.ndarray] = (),
    on_step: Callable[[StepStats], None] | None = None,
) -> TrainingRun:
    """Run the remaining steps of ``trainer``'s schedule, then evaluate on ``valid_samples``
    (each rank evaluates its share)."""
    began = time.perf_counter()
    ctx, config = trainer.context, trainer.config
    run = TrainingRun()
    for step in range(trainer.step_count, config.steps):
        share = step_samples(
            len(train_samples), config.batch_size, config.seed, step, ctx.rank, ctx.world
        )
        stats = trainer.train_step([train_samples[i] for i in share])
        run.history.append(stats)
        if on_step is not None:
            on_step(stats)
    if valid_samples:
        trainer.model.runtime.reset_counters()
        run.valid = trainer.evaluate(list(valid_samples)[ctx.rank :: ctx.world])
    run.seconds = time.perf_counter() - began
    return run
