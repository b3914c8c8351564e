"""Launching a Ray Train worker group: the machinery every distributed stage shares.

``launch(loop, config, num_workers=2, storage=folder)`` runs ``loop(config)`` on N Ray Train
workers with ``torch.distributed`` set up (gloo on CPU, NCCL when the workers
have GPUs), under a run name and storage folder of its own, restarts the
workers from the last checkpoint when one dies, and returns what rank 0's loop
returned. Inside the loop, :func:`save_checkpoint` reports an epoch (rank 0's
state becomes the checkpoint) and :func:`restore_checkpoint` returns the state
to resume from after a restart; the last checkpoint's state comes back in
:class:`LaunchResult`.

The process that calls :func:`launch` only waits: Ray Train's controller is a
zero-CPU actor, and a distributed stage's own Ray task asks for no CPUs or
GPUs, so the workers can have all of them (on a 2-CPU machine, two 1-CPU
workers). Ray is started when the caller has not started or joined one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray import cloudpickle
from ray.train.torch import TorchTrainer

from memotune.pipelines.shipping import UserCode

logger = logging.getLogger(__name__)

#: The file in a checkpoint folder that holds rank 0's state.
STATE_FILE = "state.pt"


class DistributedTrainingError(RuntimeError):
    """A distributed training run failed for good (after its restarts), or cannot start."""


@dataclass(frozen=True)
class WorkerResources:
    """What each of ``num_workers`` Ray Train workers asks for."""

    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise ValueError("cpus_per_worker and gpus_per_worker must be >= 0")

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    @property
    def per_worker(self) -> dict[str, float]:
        resources = {"CPU": float(self.cpus_per_worker)}
        if self.use_gpu:
            resources["GPU"] = float(self.gpus_per_worker)
        return resources

    @property
    def torch_threads(self) -> int:
        return max(1, int(self.cpus_per_worker))

    def scaling_config(self) -> ray.train.ScalingConfig:
        return ray.train.ScalingConfig(
            num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=self.per_worker
        )

    def check_cluster(self) -> None:
        """Fail now, with the numbers, if the cluster can never hold the workers
        (Ray Train would otherwise wait for them forever)."""
        total = ray.cluster_resources()
        for resource, amount in self.per_worker.items():
            needed = amount * self.num_workers
            if needed > total.get(resource, 0.0) + 1e-9:
                raise DistributedTrainingError(
                    f"{self.num_workers} workers x {amount:g} {resource} = {needed:g} {resource}, "
                    f"but the Ray cluster has {total.get(resource, 0.0):g} {resource}"
                )


@dataclass
class LaunchResult:
    """What one training run gave back."""

    value: Any
    """What rank 0's training loop returned (plain Python: Ray Train refuses tensors here)."""
    state: dict[str, Any] | None
    """The state of the run's last checkpoint (see :func:`save_checkpoint`), on the CPU."""
    metrics: dict[str, Any]
    """The metrics of the last report that carried a checkpoint (Ray Train's ``Result.metrics``)."""
    run_name: str
    path: str
    """The run's folder (its checkpoints); removed after success unless ``keep_files``."""
    seconds: float
    """Wall-clock seconds of the whole run, start-up and restarts included."""


def launch(
    train_loop_per_worker: Callable[[dict[str, Any]], Any],
    config: dict[str, Any],
    *,
    storage: str | Path,
    num_workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    name: str = "train",
    max_failures: int = 2,
    keep_files: bool = False,
) -> LaunchResult:
    """Run ``train_loop_per_worker(config)`` on a Ray Train worker group and wait for it.

    Each of the ``num_workers`` workers asks Ray for ``cpus_per_worker`` CPUs
    and ``gpus_per_worker`` GPUs; with GPUs the process group uses NCCL, else
    gloo, and torch uses ``cpus_per_worker`` threads per worker. The run is
    named ``{name}-{time}-{random}`` under ``storage``, so two runs never share
    (and Ray Train never restores) a run folder. Failed workers are restarted
    from the last checkpoint up to ``max_failures`` times; then
    :class:`DistributedTrainingError` is raised and the run folder is kept.
    """
    resources = WorkerResources(num_workers, cpus_per_worker, gpus_per_worker)
    ensure_ray()
    resources.check_cluster()
    run_name = unique_run_name(name)
    storage = Path(storage).resolve()
    trainer = TorchTrainer(
        partial(
            _run_user_loop,
            UserCode.of(train_loop_per_worker, config),
            cloudpickle.dumps((train_loop_per_worker, config)),
            resources.torch_threads,
        ),
        scaling_config=resources.scaling_config(),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # no per-report lines
        ),
    )
    logger.info("starting %s on %d worker(s) in %s", run_name, resources.num_workers, storage)
    started = time.perf_counter()
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as error:
        raise DistributedTrainingError(
            f"training run '{run_name}' failed (max_failures={max_failures}): "
            f"{_summary(error)} (checkpoints in {storage / run_name})"
        ) from error
    seconds = time.perf_counter() - started
    state = _load_state(result.checkpoint) if result.checkpoint else None
    path = str(storage / run_name)
    if not keep_files:
        shutil.rmtree(path, ignore_errors=True)
    return LaunchResult(
        result.return_value, state, dict(result.metrics or {}), run_name, path, seconds
    )


def save_checkpoint(state: dict[str, Any], metrics: dict[str, float]) -> None:
    """Report ``metrics`` from this worker; rank 0's ``state`` is saved as the checkpoint
    a restarted worker group resumes from. Every rank must call it, the same number of
    times (it is a barrier)."""
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def restore_checkpoint() -> dict[str, Any] | None:
    """The state of the run's last checkpoint (tensors on the CPU), or ``None`` on a fresh start."""
    checkpoint = ray.train.get_checkpoint()
    return None if checkpoint is None else _load_state(checkpoint)


def _load_state(checkpoint: ray.train.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)


def ensure_ray() -> None:
    """Start a local Ray (or join ``$RAY_ADDRESS``) unless this process is already connected.

    Without ``$RAY_ADDRESS`` a new local instance is started rather than joining
    whatever ``ray start`` cluster runs on the machine (``ray.init()``'s default).
    """
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, include_dashboard=False, log_to_driver=False)


def unique_run_name(prefix: str) -> str:
    """A Ray Train run name no other run has: the prefix, the time and a random suffix."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", prefix).strip("-") or "train"
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def _run_user_loop(code: UserCode, payload: bytes, threads: int) -> Any:
    """On a worker: import the user's modules, then unpickle the loop and its config
    (sent as bytes, so nothing of the user's is unpickled before the import)."""
    code.load()
    loop, config = cloudpickle.loads(payload)
    torch.set_num_threads(threads)
    return loop(config)


def _summary(error: ray.train.TrainingFailedError) -> str:
    """One line: the first failed worker's rank and its exception's last line."""
    failures = getattr(error, "worker_failures", None) or {}
    if failures:
        rank, cause = min(failures.items())
        where = f"rank {rank}: "
    else:
        cause, where = getattr(error, "controller_failure", error), ""
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return where + (lines[-1] if lines else type(cause).__name__)
