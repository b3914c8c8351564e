"""The data-parallel trainer stage on real Ray Train workers (gloo on CPU).

Each Ray Train run costs about 20-30 s of fixed start-up on a 2-CPU machine,
so this file keeps to few runs: DDP against a single process, a worker
killed mid-training, a run stopped early and continued, and the digits example
through the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from mlflow import MlflowClient
from ray import cloudpickle
from torch import nn

from memotune import Int, Pipeline, Stage, StageCache, run
from memotune.loading import load_pipeline
from memotune.pipelines import SpaceError, run_trial
from memotune.pipelines.ray_runner import RayRunner
from memotune.stages.distributed import (
    DistributedTrainingError,
    TrainedModel,
    ddp_trainer,
    global_batches,
    launch,
)
from memotune.tracking.runs import trial_metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits_cnn.py"

#: How close DDP's weights must come to the single-process reference's. Both
#: take the same steps; only the float32 summation order of the gradients
#: differs (an all-reduce of shard gradients against one batch gradient).
WEIGHT_TOLERANCE = 1e-5


class SmallNet(nn.Module):
    """A small classifier that, when given a marker file, kills its worker (rank 1)
    on its ``crash_at``-th forward pass, once: the marker is renamed first. It
    waits a little before dying, so that Ray Train's controller (which polls the
    workers every 2 s) has registered the checkpoints reported so far."""

    def __init__(self, marker: str = "", crash_at: int = 0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
        self.marker, self.crash_at, self.calls = marker, crash_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.crash_at and dist.get_rank() == 1 and os.path.exists(self.marker):
            os.rename(self.marker, self.marker + ".crashed")
            time.sleep(5)
            os._exit(1)
        return self.net(x)


def accuracy(logits, labels):
    return {"accuracy": (logits.argmax(1) == labels).float().mean().item()}


def make_data(n: int = 103, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    return {"train": (x, y)}


def single_process(data: dict, params: dict, seed: int = 0):
    """Plain torch, one process: Adam on the mean loss of each global batch."""
    x, y = (torch.as_tensor(a) for a in data["train"])
    torch.manual_seed(seed)
    model = SmallNet()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"]
    )
    losses = []
    for epoch in range(params["epochs"]):
        total = 0.0
        for batch in global_batches(len(x), params["batch_size"], seed, epoch):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(x))
    return model.state_dict(), losses


def max_difference(weights: dict, reference: dict) -> float:
    assert weights.keys() == reference.keys()
    return max(float((weights[k] - reference[k]).abs().max()) for k in reference)


@pytest.fixture(scope="module", autouse=True)
def _ship_this_module():
    """Ray's workers cannot import test modules: send the nested task by value."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_two_ddp_workers_take_the_single_process_steps_nested_in_a_ray_task(ray_session):
    """Uneven shards included: 103 samples in global batches of 25 (the last one 3)."""
    data = make_data()
    params = {"lr": 0.02, "batch_size": 25, "epochs": 3, "weight_decay": 1e-3}
    stage = ddp_trainer(SmallNet, F.cross_entropy, space={}, fixed={**params, "num_workers": 2})
    assert stage.ray_options["num_cpus"] == 0

    @ray_session.remote(**stage.ray_options)
    def stage_task(upstream):  # what the Ray runner does with a stage
        return stage(upstream)

    output = ray_session.get(stage_task.remote(data), timeout=400)
    trained: TrainedModel = output.value
    reference, reference_losses = single_process(data, params)

    assert max_difference(trained.state_dict, reference) < WEIGHT_TOLERANCE
    assert max_difference(trained.state_dict, SmallNet().state_dict()) > 1e-2  # it trained
    assert [row["epoch"] for row in trained.history] == [0, 1, 2]
    train_losses = [row["train_loss"] for row in trained.history]
    assert train_losses == pytest.approx(reference_losses, rel=1e-5)
    assert [row["step"] for row in output.history] == [1, 2, 3]  # epochs done
    assert output.metrics["resumes"] == 0
    assert output.metrics["ray_train_overhead_seconds"] > 0


def test_a_killed_worker_is_restarted_from_the_last_checkpoint(ray_session, tmp_path):
    """Rank 1 dies mid-way through epoch 2 (0-based) on the first attempt; the group
    restarts from the last registered checkpoint (epoch 1's, or epoch 0's if the
    controller had not yet seen epoch 1's) and ends where an uninterrupted run ends."""
    data = make_data()
    params = {"lr": 0.02, "batch_size": 25, "epochs": 4, "weight_decay": 0.0}
    batches_per_epoch = len(global_batches(103, 25, 0, 0))
    marker = tmp_path / "crash-once"
    marker.touch()
    model = partial(SmallNet, marker=str(marker), crash_at=2 * batches_per_epoch + 2)
    stage = ddp_trainer(
        model, F.cross_entropy, space={}, fixed={**params, "num_workers": 2}, max_failures=1
    )
    output = stage({**data, "val": data["train"], "test": "handed on"})
    trained: TrainedModel = output.value

    assert not marker.exists() and Path(f"{marker}.crashed").exists()  # the worker did die
    assert len(trained.resumed_from) == 1 and trained.resumed_from[0] in (1, 2)
    assert output.metrics["resumes"] == 1
    assert [row["epoch"] for row in trained.history] == [0, 1, 2, 3]
    reference, _ = single_process(data, params)
    assert max_difference(trained.state_dict, reference) < WEIGHT_TOLERANCE
    assert trained.data["test"] == "handed on"
    assert "val_loss" in trained.history[-1]


@pytest.mark.slow  # 40 s; nested DDP in a Ray task and prefix reuse are tested apart above
def test_digits_example_reuses_the_cached_preprocessing(ray_session, tmp_path):
    """Two configurations share the preprocessing settings. The in-process runner
    (``memotune.run``) computes the first; the Ray runner, on the same cache, runs
    the second: it loads the preprocessing and trains nested in a stage task."""
    pipeline = load_pipeline(str(EXAMPLE))  # as `memotune tune` loads it (not importable)
    preprocess = {"normalize": "standardize", "augment": "none"}
    train = {
        "lr": 0.01,
        "batch_size": 64,
        "epochs": 3,
        "weight_decay": 1e-5,
        "num_workers": 1,
        "channels": 8,
    }
    cache = StageCache(tmp_path / "cache")

    one = run(pipeline, {"preprocess": preprocess, "train": train}, cache=cache)
    runner = RayRunner(pipeline, cache)
    runner.submit(1, {"preprocess": preprocess, "train": {**train, "num_workers": 2}})
    (two,) = runner.wait()

    assert one.completed and two.completed, two.error
    assert [s.hit for s in one.stages] == [False, False, False]
    assert [(s.stage, s.hit, s.loaded) for s in two.stages] == [
        ("preprocess", True, True),
        ("train", False, False),
        ("evaluate", False, False),
    ]
    assert two.stages[0].key == one.stages[0].key
    # the train key's scratch folder
    storages = list((tmp_path / "cache" / "work").glob("*/ray-train"))
    assert storages and not [run for folder in storages for run in folder.iterdir()]
    assert two.stages[0].compute_seconds == one.stages[0].compute_seconds  # not recomputed
    for record in (one, two):
        assert record.objective > 0.8  # test accuracy of a 3-epoch CNN on digits
        stage = record.stages[1]
        assert stage.metrics["resumes"] == 0
        assert [row["step"] for row in stage.history] == [1, 2, 3]
        logged = {(m.key, m.value, m.step) for m in trial_metrics(record, 0.0)}  # for MLflow
        for row in stage.history:
            for name in ("train_loss", "val_loss", "val_accuracy", "epoch_seconds"):
                assert (f"train.{name}", row[name], row["step"]) in logged


class StopAt:
    """A pruner that stops every trial once it has trained ``epochs`` epochs."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def decides_at(self, stage: str, step: int) -> bool:
        return step == self.epochs

    def should_prune(self, trial_id, stage, step, metrics) -> bool:
        assert "val_loss" in metrics  # rank 0 asks, with its validation figures
        return True


@pytest.mark.slow  # 53 s on fc-v782; pruning and continuing a run are tested on one process
# (test_pruning, test_checkpoints), DDP checkpoints and resumes above
def test_an_epochs_fidelity_stops_in_the_workers_and_goes_on_from_the_cache(ray_session, tmp_path):
    """A run pruned after 2 of 4 epochs keeps its state; the same settings then train
    only the 2 epochs left, and end where 4 epochs in one process end."""
    data = {**make_data(), "val": make_data(seed=1)["train"]}
    params = {"lr": 0.02, "batch_size": 25, "weight_decay": 0.0, "num_workers": 1}
    trainer = ddp_trainer(
        SmallNet, F.cross_entropy, space={"epochs": Int(1, 4)}, fixed=params, fidelity=True
    )
    source = Stage(lambda inputs: data, name="data", version="1")
    score = Stage(lambda trained: {"loss": trained.metrics["train_loss"]}, name="score")
    pipeline = Pipeline([source, trainer, score], objective="loss", direction="minimize")
    config = {"data": {}, "train": {"epochs": 4}, "score": {}}
    cache = StageCache(tmp_path / "cache")

    stopped = run_trial(pipeline, pipeline.plan(config), cache, trial_id=0, judge=StopAt(2))
    assert stopped.pruned and [h["step"] for h in stopped.stages[1].history] == [1, 2]
    continued = run(pipeline, config, cache=cache)
    assert continued.completed and continued.stages[1].resumed_from == 2
    assert [h["step"] for h in continued.stages[1].history] == [1, 2, 3, 4]
    trained: TrainedModel = cache.get(continued.stages[1].key).value["value"]
    reference, reference_losses = single_process(data, {**params, "epochs": 4})
    assert max_difference(trained.state_dict, reference) < WEIGHT_TOLERANCE
    assert [row["train_loss"] for row in trained.history] == pytest.approx(reference_losses)
    with pytest.raises(SpaceError, match="epochs fidelity"):
        ddp_trainer(SmallNet, F.cross_entropy, space={}, fixed={"epochs": 4}, fidelity=True)


def test_workers_the_cluster_can_never_hold_fail_at_once(ray_session, tmp_path):
    with pytest.raises(DistributedTrainingError, match="3 workers x 1 CPU = 3 CPU.* has 2 CPU"):
        launch(print, {}, num_workers=3, storage=tmp_path)
    with pytest.raises(DistributedTrainingError, match="1 workers x 1 GPU = 1 GPU.* has 0 GPU"):
        launch(print, {}, gpus_per_worker=1, storage=tmp_path)


@pytest.mark.slow
def test_memotune_tune_runs_the_example_with_eeipu_and_logs_epochs_to_mlflow(tmp_path):
    """The README's command, in a fresh process: the Ray runner (its own Ray), EEIPU,
    and each trial's per-epoch training metrics in MLflow, stepped by epoch."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "memotune", "tune", str(EXAMPLE), "--tuner", "eeipu"]
        + ["--budget", "120", "--study", "digits-cnn", "--json"],
        cwd=tmp_path,
        env={**env, "RAY_ADDRESS": "local"},  # its own Ray, not a `ray start` cluster
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["trials"] >= 1 and summary["best_value"] > 0.5

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits-cnn")
    trials = [
        child
        for child in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" in child.data.tags and child.data.tags["status"] == "completed"
    ]
    assert trials
    for child in trials:
        epochs = int(child.data.params["train.epochs"])
        history = client.get_metric_history(child.info.run_id, "train.val_accuracy")
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))
