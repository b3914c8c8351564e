"""The data-parallel trainer's parts that need no Ray: batches, settings, versions
and the upstream format."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from torch import nn

from memotune import Float, Int, SpaceError
from memotune.stages.distributed import (
    DEFAULT_SPACE,
    TrainSettings,
    ddp_trainer,
    global_batches,
    loss_weight,
    shard,
    unique_run_name,
)


def mlp(width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 3))


def other_mlp(width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))


def test_global_batches_cover_every_sample_once_in_a_seeded_order():
    epoch0 = global_batches(103, 25, seed=7, epoch=0)
    assert [len(b) for b in epoch0] == [25, 25, 25, 25, 3]
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(103))
    again = global_batches(103, 25, seed=7, epoch=0)
    assert all((a == b).all() for a, b in zip(epoch0, again, strict=True))
    epoch1 = global_batches(103, 25, seed=7, epoch=1)
    assert not (np.concatenate(epoch0) == np.concatenate(epoch1)).all()


@pytest.mark.parametrize("batch_size", [25, 3, 2])
def test_weighted_shard_losses_average_to_the_global_batch_mean(batch_size):
    losses = np.random.default_rng(0).random(batch_size)
    world = 3
    shards = [shard(np.arange(batch_size), rank, world) for rank in range(world)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(batch_size))
    ddp_average = (
        sum(
            loss_weight(len(s), batch_size, world) * losses[s].mean() if len(s) else 0.0
            for s in shards
        )
        / world
    )
    assert ddp_average == pytest.approx(losses.mean(), rel=1e-12)


def test_settings_reject_values_a_user_can_get_wrong():
    with pytest.raises(ValueError, match="optimizer"):
        TrainSettings(optimizer="lbfgs")
    with pytest.raises(ValueError, match="batch_size .* num_workers"):
        TrainSettings(batch_size=1, num_workers=2)
    with pytest.raises(ValueError, match="epochs"):
        TrainSettings(epochs=0)


def test_trainer_stage_asks_for_no_cpus_and_searches_the_default_space():
    stage = ddp_trainer(mlp, F.cross_entropy, fixed={"epochs": 3})
    assert stage.ray_options == {"num_cpus": 0, "num_gpus": 0}
    assert set(stage.space) == set(DEFAULT_SPACE) - {"epochs"}
    assert stage.takes_context


def test_trainer_stage_errors_name_the_parameter():
    with pytest.raises(SpaceError, match="'depth'.*neither training settings"):
        ddp_trainer(mlp, F.cross_entropy, space={"depth": Int(1, 3)})
    with pytest.raises(SpaceError, match="'lr'.*both searched and fixed"):
        ddp_trainer(mlp, F.cross_entropy, space={"lr": Float(0.01, 0.1)}, fixed={"lr": 0.1})
    with pytest.raises(SpaceError, match="optimizer"):
        ddp_trainer(mlp, F.cross_entropy, fixed={"optimizer": "rmsprop"})
    with pytest.raises(SpaceError, match="loss must be callable"):
        ddp_trainer(mlp, "cross_entropy")
    with pytest.raises(SpaceError, match="checkpoint_every must be >= 1"):
        ddp_trainer(mlp, F.cross_entropy, checkpoint_every=0)
    with pytest.raises(SpaceError, match="cpus_per_worker and gpus_per_worker"):
        ddp_trainer(mlp, F.cross_entropy, gpus_per_worker=-1)
    model_space = ddp_trainer(mlp, F.cross_entropy, space={"width": Int(4, 16)})
    assert set(model_space.space) == {"width"}


def test_version_covers_the_model_the_loss_and_the_fixed_values():
    base = ddp_trainer(mlp, F.cross_entropy, fixed={"epochs": 3}).version
    assert ddp_trainer(mlp, F.cross_entropy, fixed={"epochs": 3}).version == base
    assert ddp_trainer(other_mlp, F.cross_entropy, fixed={"epochs": 3}).version != base
    assert ddp_trainer(mlp, F.nll_loss, fixed={"epochs": 3}).version != base
    assert ddp_trainer(mlp, F.cross_entropy, fixed={"epochs": 4}).version != base
    assert ddp_trainer(mlp, F.cross_entropy, version="v1").version == "v1"


def test_upstream_without_a_train_split_fails_before_any_training():
    stage = ddp_trainer(mlp, F.cross_entropy, fixed={"epochs": 1})
    params = {"lr": 0.01, "batch_size": 16, "weight_decay": 0.0, "num_workers": 1}
    with pytest.raises(TypeError, match="'train'.*dict with a 'train' entry"):
        stage((np.zeros((4, 4)), np.zeros(4)), **params)
    with pytest.raises(TypeError, match="'val' must be \\(inputs, targets\\)"):
        stage({"train": (np.zeros((4, 4)), np.zeros(4)), "val": np.zeros(3)}, **params)


def test_run_names_never_repeat():
    names = {unique_run_name("train/stage 1") for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith("train-stage-1-") for name in names)
