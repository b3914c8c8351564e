"""The data-parallel training loop each Ray Train worker runs.

Every rank builds the same model from the same seed, wraps it in DDP
(``ray.train.torch.prepare_model``), and walks the same global batches; rank r
trains on its share of each batch. Losses are weighted so that DDP's gradient
average is exactly the gradient of the global batch's mean loss, so N workers
take the steps a single process would take on the same global batches. After
each epoch rank 0 evaluates the validation split; every few epochs it saves
a checkpoint, and a restarted worker group resumes from the last one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn

from .batches import global_batches, loss_weight, shard
from .launch import restore_checkpoint, save_checkpoint

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricsFn = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]

#: Samples per forward pass when evaluating the validation split.
EVAL_CHUNK = 1024


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, s: torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay),
    "adamw": lambda params, s: torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay),
    "sgd": lambda params, s: torch.optim.SGD(
        params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
    ),
}


@dataclass(frozen=True)
class TrainSettings:
    """The training hyperparameters of a data-parallel trainer (any of them may be searched).

    ``batch_size`` is the global batch, split across ``num_workers``.
    ``momentum`` applies to ``sgd`` only.
    """

    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 5
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    num_workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        for name in ("batch_size", "epochs", "num_workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.batch_size < self.num_workers:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be at least num_workers ({self.num_workers})"
            )
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(
                f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}"
            )


@dataclass
class LoopConfig:
    """Everything a worker needs: what to build, what to train on, and how."""

    model: Callable[..., nn.Module]
    loss: LossFn
    settings: TrainSettings
    train: tuple[Any, Any]
    val: tuple[Any, Any] | None = None
    metrics: MetricsFn | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 1
    """Epochs between checkpoints (the last epoch always gets one)."""
    initial: dict[str, Any] | None = None
    """A state to start from (as :func:`train_worker` checkpoints it): a cached run of the
    same training with fewer epochs, continued."""
    pruning: Pruning | None = None
    """Who decides, at its rungs, whether the run stops early."""


@dataclass(frozen=True)
class Pruning:
    """The study's pruner as a run asks it: ``judge`` (a :class:`memotune.pipelines.Judge`)
    for trial ``trial_id``'s stage ``stage``, at epochs counted from 1."""

    judge: Any
    trial_id: int | None
    stage: str

    def decides_at(self, epochs: int) -> bool:
        return bool(self.judge.decides_at(self.stage, epochs))

    def stops(self, epochs: int, row: dict[str, float]) -> bool:
        return bool(self.judge.should_prune(self.trial_id, self.stage, epochs, row))


def make_model(config: LoopConfig) -> nn.Module:
    """The model every rank (and the single-process reference) starts from."""
    torch.manual_seed(config.settings.seed)
    return config.model(**config.model_kwargs)


def make_optimizer(
    params: Iterable[nn.Parameter], settings: TrainSettings
) -> torch.optim.Optimizer:
    return OPTIMIZERS[settings.optimizer](params, settings)


def train_worker(config: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train's ``train_loop_per_worker``: ``config["loop"]`` is a :class:`LoopConfig`.

    Every ``checkpoint_every``-th epoch, every epoch where the pruner decides and the
    last end with a checkpoint holding rank 0's weights (``"model"``), so the last one
    holds the trained weights. Training starts from ``loop.initial`` if given (unless
    a restart finds a checkpoint of this run), and stops early where the pruner says
    so (every rank learns rank 0's answer). Rank 0 returns the per-epoch history, the
    epochs training resumed from after a failure, the wall seconds of each epoch this
    attempt ran, checkpoints included, and the epochs after which it was stopped
    (``pruned_at``, or None); other ranks return None.
    """
    loop: LoopConfig = config["loop"]
    settings = loop.settings
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()

    model = make_model(loop)
    state = restore_checkpoint()
    restarted = state is not None
    if state is None:
        state = loop.initial
    if state is not None:
        model.load_state_dict(state["model"])
    model = ray.train.torch.prepare_model(model)
    optimizer = make_optimizer(model.parameters(), settings)
    history: list[dict[str, float]] = []
    resumed_from: list[int] = []
    first_epoch = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        history, first_epoch = list(state["history"]), int(state["epoch"]) + 1
        resumed_from = [*state["resumed_from"], *([first_epoch] if restarted else [])]

    inputs, targets = (as_tensor(a) for a in loop.train)
    epoch_walls: list[float] = []  # whole epochs, checkpoint included
    pruned_at = None
    for epoch in range(first_epoch, settings.epochs):
        epoch_started = time.perf_counter()
        local = train_epoch(
            model, optimizer, loop.loss, inputs, targets, settings, epoch, rank, world
        )
        train_loss = _global_mean(local, device, world)
        row = {"epoch": float(epoch), "train_loss": train_loss}
        if rank == 0 and loop.val is not None:
            row.update(evaluate(_unwrap(model), loop.loss, loop.metrics, loop.val, device))
        row["epoch_seconds"] = time.perf_counter() - epoch_started
        history.append(row)
        last = epoch + 1 == settings.epochs
        judged = loop.pruning is not None and not last and loop.pruning.decides_at(epoch + 1)
        stop = judged and _stops(loop.pruning, epoch + 1, row, rank, device, world)
        if last or judged or (epoch + 1) % loop.checkpoint_every == 0:
            state = {}  # only rank 0's is saved
            if rank == 0:
                state = {
                    "model": _cpu_state(model),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "resumed_from": resumed_from,
                }
            save_checkpoint(state, row)
        epoch_walls.append(time.perf_counter() - epoch_started)
        if stop:
            pruned_at = epoch + 1
            break
    if rank != 0:
        return None
    return {
        "history": history,
        "resumed_from": resumed_from,
        "epoch_walls": epoch_walls,
        "pruned_at": pruned_at,
    }


def _stops(
    pruning: Pruning,
    epochs: int,
    row: dict[str, float],
    rank: int,
    device: torch.device,
    world: int,
) -> bool:
    """Rank 0 asks the pruner (it alone has the validation figures); every rank gets its
    answer, so all stop after the same epoch."""
    answer = torch.zeros(1, device=device)
    if rank == 0:
        answer += float(pruning.stops(epochs, row))
    if world > 1:
        dist.broadcast(answer, src=0)
    return bool(answer.item())


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    settings: TrainSettings,
    epoch: int,
    rank: int,
    world: int,
) -> tuple[float, int]:
    """One epoch over rank ``rank``'s shares of the global batches; returns its
    summed loss and sample count."""
    device = next(model.parameters()).device
    model.train()
    loss_sum, count = 0.0, 0
    for batch in global_batches(len(inputs), settings.batch_size, settings.seed, epoch):
        index = torch.as_tensor(shard(batch, rank, world))
        optimizer.zero_grad(set_to_none=True)
        outputs = model(inputs[index].to(device))
        if len(index):
            loss = loss_fn(outputs, targets[index].to(device))
            (loss * loss_weight(len(index), len(batch), world)).backward()
            loss_sum += float(loss.detach()) * len(index)
            count += len(index)
        else:  # an empty share still joins DDP's gradient all-reduce, with zeros
            (outputs.sum() * 0.0).backward()
        optimizer.step()
    return loss_sum, count


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    metrics_fn: MetricsFn | None,
    split: tuple[Any, Any],
    device: torch.device,
) -> dict[str, float]:
    """Validation loss and metrics over the whole split (sample-weighted means over chunks)."""
    model.eval()
    inputs, targets = (as_tensor(a) for a in split)
    totals: dict[str, float] = {}
    for start in range(0, len(inputs), EVAL_CHUNK):
        x = inputs[start : start + EVAL_CHUNK].to(device)
        y = targets[start : start + EVAL_CHUNK].to(device)
        outputs = model(x)
        chunk = {"val_loss": float(loss_fn(outputs, y))}
        if metrics_fn is not None:
            chunk.update({f"val_{k}": float(v) for k, v in metrics_fn(outputs, y).items()})
        for key, value in chunk.items():
            totals[key] = totals.get(key, 0.0) + value * len(x)
    return {key: value / len(inputs) for key, value in totals.items()}


def as_tensor(array: Any) -> torch.Tensor:
    """A tensor of ``array`` (copied: arrays from Ray's object store are read-only)."""
    if isinstance(array, torch.Tensor):
        return array
    return torch.from_numpy(np.array(array))


def _global_mean(local: tuple[float, int], device: torch.device, world: int) -> float:
    """The sample-weighted mean of every rank's (sum, count)."""
    totals = torch.tensor([local[0], float(local[1])], dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(totals)
    return float(totals[0] / totals[1])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()}
