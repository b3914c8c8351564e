"""Stacked ensembles of scikit-learn models, one pipeline stage per base model.

A base-model stage fits its model on the training split and adds three
blocks of class probabilities to the stack: out-of-fold predictions for the
training rows (``cross_val_predict``, so the meta-model never sees a
prediction made by a model that was trained on that row), and the model
refitted on all training rows applied to the validation and test rows. The
meta-model stage fits its model on the stacked training blocks (optionally
beside the raw features) and reports held-out metrics; the objective is
validation accuracy, test figures are reported beside it.

Chaining the base models (the expensive ones first) gives configurations
that agree on the first models a cached prefix to share.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from memotune.pipelines import Output, Param, SpaceError, Stage, check_settings, factory_version
from memotune.stages.threads import limited_threads

ModelFactory = Callable[..., ClassifierMixin]
#: The meta-model stage's own setting (every other one goes to its model factory).
PASSTHROUGH = "passthrough"


@dataclass(frozen=True)
class TabularSplits:
    """Training, validation and test rows of a classification data set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class Stack:
    """The splits and, per base model so far, its probabilities for each split."""

    splits: TabularSplits
    blocks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def features(self, split: str, passthrough: bool = False) -> np.ndarray:
        """Every base model's probabilities for ``split`` side by side (and the raw
        features after them with ``passthrough``)."""
        if not self.blocks:
            raise ValueError("the stack holds no base model yet")
        columns = [block[split] for block in self.blocks.values()]
        if passthrough:
            columns.append(getattr(self.splits, f"x_{split}"))
        return np.hstack(columns)


def base_model_stage(
    make_model: ModelFactory,
    *,
    space: dict[str, Param],
    fixed: dict[str, Any] | None = None,
    name: str,
    folds: int = 5,
    seed: int = 0,
    threads: int = 1,
) -> Stage:
    """A stage that adds ``make_model(**settings)``'s predictions to the stack.

    The upstream is a :class:`TabularSplits` (first base model) or a
    :class:`Stack`. ``folds`` stratified folds, shuffled by ``seed``, give the
    out-of-fold predictions.
    """
    fixed = check_settings(name, space, fixed)

    def fit_base_model(upstream: TabularSplits | Stack, **params: Any) -> Output:
        stack = _as_stack(upstream, name)
        if name in stack.blocks:
            raise SpaceError(f"stage '{name}': the stack already holds a model named '{name}'")
        s = stack.splits
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        with limited_threads(threads):
            model = make_model(**fixed, **params)
            oof = cross_val_predict(model, s.x_train, s.y_train, cv=cv, method="predict_proba")
            model.fit(s.x_train, s.y_train)
            valid, test = model.predict_proba(s.x_valid), model.predict_proba(s.x_test)
        block = {"train": oof, "valid": valid, "test": test}
        stacked = Stack(s, {**stack.blocks, name: block})
        metrics = {
            "oof_accuracy": accuracy_score(s.y_train, model.classes_[oof.argmax(1)]),
            "valid_accuracy": accuracy_score(s.y_valid, model.classes_[valid.argmax(1)]),
        }
        return Output(stacked, metrics=metrics)

    version = factory_version(
        [sys.modules[__name__], make_model], {**fixed, "__stage__": {"folds": folds, "seed": seed}}
    )
    return Stage(fit_base_model, space=space, name=name, version=version)


def meta_model_stage(
    make_model: ModelFactory,
    *,
    space: dict[str, Param],
    fixed: dict[str, Any] | None = None,
    name: str = "meta",
    threads: int = 1,
) -> Stage:
    """The last stage: fit ``make_model(**settings)`` on the stacked out-of-fold
    predictions and report ``accuracy`` (validation: the objective), ``auroc``
    (one-vs-rest, macro), ``log_loss``, and ``test_accuracy`` / ``test_auroc``.

    The setting ``passthrough`` (searched or fixed; default False) appends
    the raw features to the stacked ones; the others go to ``make_model``.
    """
    fixed = check_settings(name, space, fixed)

    def fit_meta_model(stack: Stack, **params: Any) -> dict[str, float]:
        settings = {**fixed, **params}
        passthrough = bool(settings.pop(PASSTHROUGH, False))
        s = _as_stack(stack, name).splits
        with limited_threads(threads):
            model = make_model(**settings)
            model.fit(stack.features("train", passthrough), s.y_train)
            valid = model.predict_proba(stack.features("valid", passthrough))
            test = model.predict_proba(stack.features("test", passthrough))
        return {
            "accuracy": accuracy_score(s.y_valid, model.classes_[valid.argmax(1)]),
            "auroc": _auroc(s.y_valid, valid, model.classes_),
            "log_loss": log_loss(s.y_valid, valid, labels=model.classes_),
            "test_accuracy": accuracy_score(s.y_test, model.classes_[test.argmax(1)]),
            "test_auroc": _auroc(s.y_test, test, model.classes_),
        }

    version = factory_version([sys.modules[__name__], make_model], fixed)
    return Stage(fit_meta_model, space=space, name=name, version=version)


def _auroc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    if len(classes) == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    return float(roc_auc_score(labels, probabilities, multi_class="ovr", labels=classes))


def _as_stack(upstream: Any, name: str) -> Stack:
    if isinstance(upstream, Stack):
        return upstream
    if isinstance(upstream, TabularSplits):
        return Stack(upstream)
    raise TypeError(
        f"stage '{name}': the upstream must be TabularSplits or a Stack, "
        f"got {type(upstream).__name__}"
    )
