"""Data-parallel training on Ray Train, as a pipeline stage.

- :func:`ddp_trainer` makes a stage that trains a torch model with N DDP
  workers (gloo on CPU, NCCL on GPUs) and returns a :class:`TrainedModel`.
- :func:`launch`, :func:`save_checkpoint` and :func:`restore_checkpoint` are
  the worker-group machinery underneath, for other distributed stages.
"""

from .batches import global_batches, loss_weight, shard
from .launch import (
    DistributedTrainingError,
    LaunchResult,
    WorkerResources,
    launch,
    restore_checkpoint,
    save_checkpoint,
    unique_run_name,
)
from .loop import OPTIMIZERS, LoopConfig, TrainSettings, train_worker
from .trainer import DEFAULT_SPACE, TrainedModel, ddp_trainer

__all__ = [
    "DEFAULT_SPACE",
    "OPTIMIZERS",
    "DistributedTrainingError",
    "LaunchResult",
    "LoopConfig",
    "TrainSettings",
    "TrainedModel",
    "WorkerResources",
    "ddp_trainer",
    "global_batches",
    "launch",
    "loss_weight",
    "restore_checkpoint",
    "save_checkpoint",
    "shard",
    "train_worker",
    "unique_run_name",
]
