"""The MoE training loop each Ray Train worker runs (``train_loop_per_worker``).

Ray Train has set up the process group (gloo on CPU, NCCL on GPUs). Every
rank trains its part (see :mod:`.trainer`); a few times per run all ranks
send their state to rank 0, which saves it as the checkpoint a restarted
worker group resumes from (each rank takes back its own part: its experts
and their optimizer state). At the end every rank evaluates its share of
the validation split, and the last checkpoint also holds the full model
(``"model"``, experts gathered from their owners); rank 0 returns the
history and figures as plain Python (Ray Train refuses tensors there).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import ray.train
import ray.train.torch
import torch.distributed as dist

from memotune.stages.distributed import restore_checkpoint, save_checkpoint

from .dataset import TokenizedCorpus
from .parallel import ParallelContext
from .settings import MoESettings
from .trainer import MoETrainer, StepStats, train

CHECKPOINTS_PER_RUN = 4


@dataclass
class MoEJob:
    settings: MoESettings
    data: TokenizedCorpus


def moe_train_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    """Train ``config["job"]`` (a :class:`MoEJob`); rank 0 returns the results."""
    began = time.perf_counter()
    job: MoEJob = config["job"]
    settings, data = job.settings, job.data
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    parallel = ParallelContext(settings.parallel_config(), rank, world)
    trainer = MoETrainer(
        settings.model_config(data.vocab_size, data.max_tokens),
        settings.train_config(),
        parallel,
        ray.train.torch.get_device(),
    )
    history: list[dict[str, float]] = []
    resumed_from: list[int] = []
    state = restore_checkpoint()
    if state is not None:
        trainer.load_rank_state(state["ranks"][rank])
        history, resumed_from = list(state["history"]), [*state["resumed_from"], trainer.step_count]
    every = max(1, settings.steps // CHECKPOINTS_PER_RUN)

    def checkpoint(metrics: dict[str, float], **extra: Any) -> None:
        ranks: list[Any] = [None] * world
        dist.all_gather_object(ranks, trainer.rank_state())
        saved = {"ranks": ranks, "history": history, "resumed_from": resumed_from, **extra}
        save_checkpoint(saved if rank == 0 else {}, metrics)

    def on_step(stats: StepStats) -> None:
        row = {k: float(v) for k, v in asdict(stats).items()}
        history.append(row)
        if stats.step % every == 0 and stats.step < settings.steps:
            checkpoint(row)

    run = train(trainer, data.train, data.valid, on_step)
    model = trainer.full_state_dict()
    checkpoint({**history[-1], **{f"valid_{k}": v for k, v in run.valid.items()}}, model=model)
    state_bytes: list[Any] = [None] * world
    dist.all_gather_object(state_bytes, trainer.state_bytes())
    if rank != 0:
        return None
    return {
        "history": history,
        "valid": run.valid,
        "resumed_from": resumed_from,
        "state_bytes": state_bytes,
        "loop_seconds": time.perf_counter() - began,
    }
