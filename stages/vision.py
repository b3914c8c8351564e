"""Small-image classification in one process: augmentation, CNN training, test-time
augmentation with soft voting.

- :func:`augment_stage`: normalisation (``scale`` or per-pixel ``standardize``)
  and ``shifts`` extra copies of every training image, moved one pixel
  (right, left, down, up, then the diagonals): more data, dearer training;
- :func:`classifier_stage`: trains a torch model (AdamW, seeded batches) on
  the prepared training images, in this process on ``threads`` threads: a
  CNN this small trains in seconds, far less than a distributed stage's
  start-up;
- :func:`tta_stage`: the last stage. Each image is classified from
  ``views`` shifted copies, whose softmax outputs at ``temperature`` are
  averaged (a low temperature approaches a majority vote, a high one an
  average of logits); reports the validation negative log-likelihood
  (``nll``, the natural objective) and accuracy, and both on the test
  images (``test_nll``, ``test_accuracy``), which nothing is fitted on.

Images are arrays ``n × height × width`` with the background at 0.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import torch
import torch.nn.functional as F
from torch import nn

from memotune.pipelines import (
    Choice,
    Float,
    Int,
    Output,
    Param,
    Stage,
    StageContext,
    TrialPruned,
    check_settings,
    factory_version,
)
from memotune.stages.threads import limited_threads

#: The range of the TTA stage's softmax temperature.
TEMPERATURES = (0.1, 10.0)
#: One-pixel moves (rows, columns), in the order shifts and views use them.
MOVES = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))
TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 3e-3,
    "epochs": 5,
    "batch_size": 64,
    "weight_decay": 1e-4,
    "seed": 0,
}
ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ImageSplits:
    """Raw images (``n × height × width``) and integer labels of each split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class PreparedImages:
    """The augmented, normalised training set, and how to normalise any other image."""

    splits: ImageSplits
    x_train: np.ndarray  # n × 1 × height × width, normalised
    y_train: np.ndarray
    mean: np.ndarray | float
    std: np.ndarray | float

    def normalize(self, images: np.ndarray) -> torch.Tensor:
        """Raw images ``n × h × w`` as the model's input ``n × 1 × h × w``."""
        return torch.from_numpy(_normalized(images, self.mean, self.std))


@dataclass
class TrainedClassifier:
    """Trained weights, the model factory's settings and the prepared data."""

    state_dict: dict[str, torch.Tensor]
    model_kwargs: dict[str, Any]
    data: PreparedImages
    history: list[dict[str, float]]

    def build(self, make_model: ModelFactory) -> nn.Module:
        model = make_model(**self.model_kwargs)
        model.load_state_dict(self.state_dict)
        return model.eval()


class SmallCNN(nn.Module):
    """Two 3×3 convolutions (``channels`` and twice that), a 2×2 max-pool, a linear head."""

    def __init__(self, channels: int = 16, image_size: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * channels * (image_size // 2) ** 2, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def shift(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Images moved by (rows, cols) pixels, the uncovered border filled with 0."""
    moved = np.zeros_like(images)
    height, width = images.shape[-2:]
    dst_r = slice(max(rows, 0), height + min(rows, 0))
    dst_c = slice(max(cols, 0), width + min(cols, 0))
    src_r = slice(max(-rows, 0), height + min(-rows, 0))
    src_c = slice(max(-cols, 0), width + min(-cols, 0))
    moved[..., dst_r, dst_c] = images[..., src_r, src_c]
    return moved


def augment_stage(*, space: dict[str, Param] | None = None, name: str = "preprocess") -> Stage:
    """A stage that normalises the images and adds shifted training copies.

    Settings: ``normalize`` (``scale``: divide by the largest pixel value;
    ``standardize``: each pixel to zero mean and unit variance over the
    training images) and ``shifts`` (0–8 extra copies of each training image).
    """
    space = dict(
        space
        if space is not None
        else {"normalize": Choice(["scale", "standardize"]), "shifts": Int(0, 4)}
    )
    check_settings(name, space, None, known={"normalize", "shifts"})

    def augment(splits: ImageSplits, normalize: str = "scale", shifts: int = 0) -> PreparedImages:
        if not 0 <= shifts <= len(MOVES):
            raise ValueError(f"stage '{name}': shifts must be in 0..{len(MOVES)}, got {shifts}")
        x, y = splits.x_train.astype(np.float32), splits.y_train
        if normalize == "scale":
            mean, std = 0.0, float(x.max())
        elif normalize == "standardize":
            mean, std = x.mean(axis=0), x.std(axis=0) + 1e-3
        else:
            raise ValueError(f"stage '{name}': normalize must be scale or standardize")
        images = np.concatenate([x, *(shift(x, *move) for move in MOVES[:shifts])])
        labels = np.concatenate([y] * (shifts + 1)).astype(np.int64)
        return PreparedImages(splits, _normalized(images, mean, std), labels, mean, std)

    return Stage(
        augment, space=space, name=name, version=factory_version([sys.modules[__name__]], {})
    )


def classifier_stage(
    make_model: ModelFactory,
    *,
    space: dict[str, Param],
    fixed: dict[str, Any] | None = None,
    name: str = "train",
    threads: int = 1,
    fidelity: bool = False,
) -> Stage:
    """A stage that trains ``make_model(**model settings)`` on :class:`PreparedImages`.

    Settings named in :data:`TRAIN_DEFAULTS` (``lr``, ``epochs``,
    ``batch_size``, ``weight_decay``, ``seed``) drive training; any other is a
    keyword argument of ``make_model``.

    With ``fidelity``, ``epochs`` (searched) is the stage's fidelity: after every
    epoch it reports ``train_loss`` (and, where the study's pruner decides, the
    validation ``valid_nll``, one view at temperature 1, and ``calibrated_nll``,
    one view at the temperature that minimizes it), keeps a checkpoint
    (weights, optimizer, shuffling and random state), and stops if the pruner says
    so; a run with more epochs goes on from the deepest cached checkpoint, with the
    result of training from scratch.
    """
    fixed = check_settings(name, space, fixed)

    def train(
        data: PreparedImages, *, context: StageContext | None = None, **params: Any
    ) -> Output:
        settings = {**TRAIN_DEFAULTS, **fixed, **params}
        model_kwargs = {k: v for k, v in settings.items() if k not in TRAIN_DEFAULTS}
        with limited_threads(threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings["seed"])
            model = make_model(**model_kwargs)
            history = _fit(model, data, settings, context if fidelity else None)
        trained = TrainedClassifier(model.state_dict(), model_kwargs, data, history)
        metrics = {"train_loss": history[-1]["train_loss"]}
        if fidelity and context is not None:  # the reports are in the context already
            return Output(trained, metrics=metrics)
        return Output(trained, metrics=metrics, history=history)

    version = factory_version([sys.modules[__name__], make_model], fixed)
    return Stage(
        train, space=space, name=name, version=version, fidelity="epochs" if fidelity else None
    )


def calibrated_nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The NLL of ``logits`` at the softmax temperature (within the TTA stage's 0.1–10)
    that minimizes it: what the model's predictions are worth once that stage has set
    its temperature, whatever their confidence now."""

    def nll(log_temperature: float) -> float:
        return F.cross_entropy(logits / math.exp(log_temperature), labels).item()

    found = scipy.optimize.minimize_scalar(
        nll, bounds=(math.log(TEMPERATURES[0]), math.log(TEMPERATURES[1])), method="bounded"
    )
    return float(min(found.fun, nll(0.0)))


def tta_stage(
    make_model: ModelFactory,
    *,
    space: dict[str, Param] | None = None,
    fixed: dict[str, Any] | None = None,
    name: str = "postprocess",
    threads: int = 1,
) -> Stage:
    """The last stage: test-time augmentation with soft voting (``views``: 1–9 views,
    the image itself first; ``temperature`` of the softmax whose outputs are averaged).

    Returns ``accuracy`` (validation), ``nll`` (validation), ``test_accuracy``
    and ``test_nll``.
    """
    space = dict(
        space
        if space is not None
        else {"views": Int(1, 9), "temperature": Float(*TEMPERATURES, log=True)}
    )
    fixed = {"views": 1, "temperature": 1.0, **(fixed or {})}
    for key in space:
        fixed.pop(key, None)
    check_settings(name, space, fixed, known={"views", "temperature"})

    def postprocess(trained: TrainedClassifier, **params: Any) -> dict[str, float]:
        settings = {**fixed, **params}
        views, temperature = int(settings["views"]), float(settings["temperature"])
        if not 1 <= views <= len(MOVES) + 1:
            raise ValueError(f"stage '{name}': views must be in 1..{len(MOVES) + 1}")
        data, splits = trained.data, trained.data.splits
        with limited_threads(threads), torch.no_grad():
            model = trained.build(make_model)
            metrics = {}
            for split, prefix in (("valid", ""), ("test", "test_")):
                images = getattr(splits, f"x_{split}").astype(np.float32)
                labels = torch.from_numpy(getattr(splits, f"y_{split}").astype(np.int64))
                moved = [images, *(shift(images, *move) for move in MOVES[: views - 1])]
                probabilities = torch.stack(
                    [F.softmax(model(data.normalize(m)) / temperature, dim=1) for m in moved]
                ).mean(0)
                metrics[f"{prefix}accuracy"] = (probabilities.argmax(1) == labels).float().mean()
                picked = probabilities[torch.arange(len(labels)), labels]
                metrics[f"{prefix}nll"] = -picked.clamp_min(1e-12).log().mean()
        return {k: float(v) for k, v in metrics.items()}

    return Stage(
        postprocess,
        space=space,
        name=name,
        version=factory_version([sys.modules[__name__], make_model], fixed),
    )


def _normalized(images: np.ndarray, mean: np.ndarray | float, std: np.ndarray | float):
    return ((images - mean) / std).astype(np.float32)[:, None]


def _fit(
    model: nn.Module,
    data: PreparedImages,
    settings: dict[str, Any],
    context: StageContext | None = None,
) -> list[dict]:
    """AdamW over shuffled mini-batches (a seeded generator); one history row per epoch.
    With a ``context``: from its checkpoint if it has one, reporting, checkpointing and
    asking whether to stop after every epoch."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"])
    )
    images, labels = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    generator = torch.Generator().manual_seed(int(settings["seed"]))
    batch = int(settings["batch_size"])
    history, start = [], 0
    if context is not None and context.resume is not None:
        state = context.resume.state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        history, start = list(state["history"]), context.resume.step
    model.train()
    for epoch in range(start, int(settings["epochs"])):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        history.append({"step": epoch + 1, "train_loss": total / len(order)})
        if context is not None:
            _report_and_keep(model, optimizer, generator, data, settings, history, context)
    model.eval()
    return history


def _report_and_keep(
    model, optimizer, generator, data, settings, history, context: StageContext
) -> None:
    """After an epoch: report it (with the validation NLL where the study's pruner decides:
    elsewhere it would cost a fifth to a half of an epoch for nothing), keep a
    checkpoint, and stop (``TrialPruned``) if the pruner says so."""
    *_, last = history
    if context.judged_at(last["step"]):
        model.eval()
        with torch.no_grad():
            images = data.normalize(data.splits.x_valid.astype(np.float32))
            logits = model(images)
        model.train()
        labels = torch.from_numpy(data.splits.y_valid.astype(np.int64))
        context.report(
            last["step"],
            train_loss=last["train_loss"],
            valid_nll=F.cross_entropy(logits, labels).item(),
            calibrated_nll=calibrated_nll(logits, labels),
        )
    else:
        context.report(last["step"], train_loss=last["train_loss"])
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "rng": torch.get_rng_state(),
        "history": list(history),
    }
    context.checkpoint(last["step"], state)
    finished = last["step"] == int(settings["epochs"])  # trained: nothing left to save
    if not finished and context.should_prune():
        raise TrialPruned()
