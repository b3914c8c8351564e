"""``ddp_trainer``: a pipeline stage that trains a torch model data-parallel on Ray Train.

The upstream stage returns a dict with a ``"train"`` split ``(inputs,
targets)``, optionally a ``"val"`` split (evaluated after every epoch) and any
other entries (a test split, ...), which are handed on to the downstream
stages. The stage returns a :class:`TrainedModel`: rank 0's trained weights,
the per-epoch history and final metrics, and those handed-on entries.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from memotune.pipelines import (
    Float,
    Int,
    Output,
    Param,
    SpaceError,
    Stage,
    StageContext,
    TrialPruned,
    check_settings,
    factory_version,
    scratch_folder,
)

from .launch import LaunchResult, WorkerResources, launch
from .loop import LoopConfig, LossFn, MetricsFn, Pruning, TrainSettings, train_worker

#: The search space of a trainer stage when none is given.
DEFAULT_SPACE: dict[str, Param] = {
    "lr": Float(1e-4, 1e-1, log=True),
    "batch_size": Int(16, 256, log=True),
    "epochs": Int(2, 20),
    "weight_decay": Float(1e-6, 1e-2, log=True),
    "num_workers": Int(1, 2),
}
SETTINGS = frozenset(f.name for f in fields(TrainSettings))


@dataclass
class TrainedModel:
    """What a trainer stage hands downstream (and the cache stores)."""

    state_dict: dict[str, torch.Tensor]
    """Rank 0's weights after the last epoch, on the CPU."""
    model_kwargs: dict[str, Any]
    """The model factory's keyword arguments (searched or fixed model settings)."""
    history: list[dict[str, float]]
    """One row per epoch: ``epoch``, ``train_loss``, ``val_*`` and ``epoch_seconds``
    (training and validation)."""
    metrics: dict[str, float]
    """The last epoch's metrics; ``resumes``, how often training resumed from a
    checkpoint after a worker failed; ``seconds_per_epoch``, whole epochs with
    their checkpoint; ``ray_train_seconds``, the run's wall-clock seconds; and
    ``ray_train_overhead_seconds``, those outside the epochs (start-up, restarts,
    tear-down)."""
    data: dict[str, Any] = field(default_factory=dict)
    """The upstream entries other than ``"train"`` (validation and test splits, ...)."""
    resumed_from: list[int] = field(default_factory=list)
    """The epochs training resumed from after a worker failed."""

    def build(self, model: Callable[..., nn.Module]) -> nn.Module:
        """The trained model: ``model(**model_kwargs)`` with these weights, in eval mode."""
        module = model(**self.model_kwargs)
        module.load_state_dict(self.state_dict)
        return module.eval()


def ddp_trainer(
    model: Callable[..., nn.Module],
    loss: LossFn,
    *,
    space: dict[str, Param] | None = None,
    fixed: dict[str, Any] | None = None,
    metrics: MetricsFn | None = None,
    name: str = "train",
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    max_failures: int = 2,
    checkpoint_every: int = 1,
    version: str | None = None,
    fidelity: bool = False,
) -> Stage:
    """A stage that trains ``model()`` with ``num_workers`` DDP workers on Ray Train.

    ``loss(outputs, targets)`` returns the batch's mean loss; ``metrics(outputs,
    targets)``, if given, a dict of per-sample means (e.g. accuracy) for the
    validation split. The search ``space`` (default: :data:`DEFAULT_SPACE`
    less the fixed names) and the ``fixed`` values may name any
    :class:`TrainSettings` field (lr, batch_size, epochs, weight_decay,
    optimizer, momentum, num_workers, seed); other names are keyword arguments
    of ``model``. Each worker asks Ray for
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (GPUs mean NCCL); the
    stage's own task asks for none, so it never holds what its workers need.
    A worker that dies is restarted from the last checkpoint, up to
    ``max_failures`` times. A checkpoint is saved every ``checkpoint_every``
    epochs and after the last; each costs a report to Ray Train's controller,
    which collects them every 2 s, so with epochs much shorter than that,
    checkpoint every few epochs. Resuming is exact, so neither setting changes
    the trained weights.

    The version covers the code that shapes the result (batches, training
    loop, this stage), ``model``, ``loss``, ``metrics`` and ``fixed``, so
    editing any of them invalidates the stage's cache entries. Pass
    ``version=`` when ``model`` calls code whose edits should count too.

    With ``fidelity``, ``epochs`` (searched) is the stage's fidelity: the run keeps its
    last state in the stage cache, a run of the same settings with more epochs goes on
    from it (exactly: the learning rate is constant and the batches follow the seed and
    the epoch), and at the study pruner's rungs rank 0 asks whether to stop (the
    state there is kept too, so a pruned run can be continued).
    """
    fixed = dict(fixed or {})
    if space is None:
        space = {k: v for k, v in DEFAULT_SPACE.items() if k not in fixed}
    space = dict(space)
    for what, callable_ in (("model", model), ("loss", loss)):
        if not callable(callable_):
            raise SpaceError(f"stage '{name}': {what} must be callable, got {callable_!r}")
    check_settings(name, space, fixed)
    _check_model_arguments(model, [p for p in [*space, *fixed] if p not in SETTINGS], name)
    if fidelity and not isinstance(space.get("epochs"), Int):
        raise SpaceError(f"stage '{name}': an epochs fidelity needs 'epochs' searched as an Int")
    if checkpoint_every < 1:
        raise SpaceError(f"stage '{name}': checkpoint_every must be >= 1, got {checkpoint_every}")
    try:  # fail now on bad fixed values and resource numbers
        TrainSettings(**{k: v for k, v in fixed.items() if k in SETTINGS})
        WorkerResources(1, cpus_per_worker, gpus_per_worker)
    except ValueError as error:
        raise SpaceError(f"stage '{name}': {error}") from None

    def train(data: Any, *, context: StageContext | None = None, **params: Any) -> Output:
        chosen = {**fixed, **params}
        settings = TrainSettings(**{k: v for k, v in chosen.items() if k in SETTINGS})
        train_split, val_split, handed_on = _splits(data, name)
        loop = LoopConfig(
            model=model,
            loss=loss,
            settings=settings,
            train=train_split,
            val=val_split,
            metrics=metrics,
            model_kwargs={k: v for k, v in chosen.items() if k not in SETTINGS},
            checkpoint_every=checkpoint_every,
            **(_continued(context, name) if fidelity else {}),
        )
        with scratch_folder(context, "memotune-ddp-") as workdir:
            run = launch(
                train_worker,
                {"loop": loop},
                storage=Path(workdir) / "ray-train",
                num_workers=settings.num_workers,
                cpus_per_worker=cpus_per_worker,
                gpus_per_worker=gpus_per_worker,
                name=name,
                max_failures=max_failures,
            )
        trained = _trained_model(run, loop.model_kwargs, handed_on)
        if context is not None:
            for row in _stepped(trained.history)[len(context.history) :]:  # not those resumed
                context.report(**row)
        if fidelity and context is not None:
            context.checkpoint(len(trained.history), run.state)
            if run.value["pruned_at"] is not None:
                raise TrialPruned()
        stepped = [] if context else _stepped(trained.history)
        return Output(trained, metrics=trained.metrics, history=stepped)

    if version is None:
        package = [sys.modules[f"{__package__}.{m}"] for m in ("batches", "loop", "trainer")]
        version = factory_version([*package, model, loss, *([metrics] if metrics else [])], fixed)
    return Stage(
        train,
        space=space,
        name=name,
        version=version,
        num_cpus=0,
        num_gpus=0,
        fidelity="epochs" if fidelity else None,
    )


def _continued(context: StageContext | None, stage: str) -> dict[str, Any]:
    """A run's cached state to go on from and the study's pruner, for the loop."""
    if context is None:
        return {}
    initial = context.resume.state if context.resume is not None else None
    pruning = Pruning(context.judge, context.trial_id, stage) if context.judge else None
    return {"initial": initial, "pruning": pruning}


def _trained_model(run: LaunchResult, model_kwargs: dict, handed_on: dict) -> TrainedModel:
    """The stage's output from a finished run: the last checkpoint's weights, rank 0's
    history and the run's figures."""
    out = run.value
    history, walls = out["history"], out["epoch_walls"]
    metrics = {k: v for k, v in history[-1].items() if k not in ("epoch", "epoch_seconds")}
    metrics |= {
        "resumes": float(len(out["resumed_from"])),
        "ray_train_seconds": run.seconds,
        "ray_train_overhead_seconds": run.seconds - sum(walls),
    }
    if walls:  # none when a restart found every epoch done
        metrics["seconds_per_epoch"] = sum(walls) / len(walls)
    return TrainedModel(
        state_dict=run.state["model"],
        model_kwargs=model_kwargs,
        history=history,
        metrics=metrics,
        data=handed_on,
        resumed_from=list(out["resumed_from"]),
    )


def _splits(data: Any, stage: str) -> tuple[tuple[Any, Any], tuple[Any, Any] | None, dict]:
    """The train split, the validation split (or None) and the entries to hand on."""
    if not isinstance(data, Mapping) or "train" not in data:
        raise TypeError(
            f"stage '{stage}': the upstream stage must return a dict with a 'train' entry "
            f"(inputs, targets), got {type(data).__name__}"
        )
    splits = {}
    for key in ("train", "val"):
        if data.get(key) is None:
            continue
        split = data[key]
        if (
            not isinstance(split, (tuple, list))
            or len(split) != 2
            or len(split[0]) != len(split[1])
        ):
            raise TypeError(
                f"stage '{stage}': upstream entry '{key}' must be (inputs, targets) of equal length"
            )
        if len(split[0]) == 0:
            raise ValueError(f"stage '{stage}': upstream entry '{key}' is empty")
        splits[key] = (split[0], split[1])
    return splits["train"], splits.get("val"), {k: v for k, v in data.items() if k != "train"}


def _check_model_arguments(model: Callable[..., nn.Module], names: list[str], stage: str) -> None:
    """Every searched or fixed name that is not a training setting must be a model argument."""
    if not names:
        return
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):
        return
    try:
        signature.bind_partial(**dict.fromkeys(names))
    except TypeError:
        raise SpaceError(
            f"stage '{stage}': {sorted(names)} are neither training settings "
            f"({sorted(SETTINGS)}) nor arguments of the model factory"
        ) from None


def _stepped(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """The history as stepped metrics: the step is the epochs done (as a fidelity counts)."""
    return [
        {"step": int(row["epoch"]) + 1, **{k: v for k, v in row.items() if k != "epoch"}}
        for row in history
    ]
