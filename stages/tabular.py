"""Stacked ensembles of scikit-learn models, one pipeline stage per base model.

- :func:`feature_stage` (optional, first): fits a scikit-learn transformer on
  the training rows and hands every split on transformed;
- :func:`base_model_stage`: fits its model on the training split and adds
  three blocks of predictions to the stack (class probabilities for a
  classifier, the prediction for a regressor): out-of-fold predictions for
  the training rows (``cross_val_predict``, so the meta-model never sees a
  prediction made by a model that was trained on that row), and the model
  refitted on all training rows applied to the validation and test rows;
- :func:`meta_model_stage` (last): fits its model on the stacked training
  blocks (optionally beside the features) and reports validation metrics
  (the objective: ``log_loss`` for classification, ``rmse`` for regression)
  and the same metrics on the test rows (``test_log_loss``, ``test_rmse``),
  which nothing is fitted on.

Chaining the base models (the expensive ones first) gives configurations
that agree on the first models a cached prefix to share.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_regressor
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

from memotune.pipelines import Output, Param, SpaceError, Stage, check_settings, factory_version
from memotune.stages.threads import limited_threads

ModelFactory = Callable[..., BaseEstimator]
#: The meta-model stage's own setting (every other one goes to its model factory).
PASSTHROUGH = "passthrough"


@dataclass(frozen=True)
class TabularSplits:
    """Training, validation and test rows of a classification or regression data set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class Stack:
    """The splits and, per base model so far, its predictions for each split."""

    splits: TabularSplits
    blocks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def features(self, split: str, passthrough: bool = False) -> np.ndarray:
        """Every base model's predictions for ``split`` side by side (and the
        features after them with ``passthrough``)."""
        if not self.blocks:
            raise ValueError("the stack holds no base model yet")
        columns = [block[split] for block in self.blocks.values()]
        if passthrough:
            columns.append(getattr(self.splits, f"x_{split}"))
        return np.hstack(columns)


def feature_stage(
    make_transformer: ModelFactory,
    *,
    space: dict[str, Param],
    fixed: dict[str, Any] | None = None,
    name: str = "features",
    threads: int = 1,
) -> Stage:
    """A first stage that fits ``make_transformer(**settings)`` on the training rows
    (features and targets, so supervised selectors work too) and returns
    :class:`TabularSplits` whose every split is transformed."""
    fixed = check_settings(name, space, fixed)

    def transform(splits: TabularSplits, **params: Any) -> Output:
        if not isinstance(splits, TabularSplits):
            raise TypeError(
                f"stage '{name}': the upstream must be TabularSplits, got {type(splits).__name__}"
            )
        with limited_threads(threads):
            transformer = make_transformer(**fixed, **params)
            x_train = transformer.fit_transform(splits.x_train, splits.y_train)
            x_valid, x_test = (
                transformer.transform(splits.x_valid),
                transformer.transform(splits.x_test),
            )
        s = splits
        out = TabularSplits(x_train, s.y_train, x_valid, s.y_valid, x_test, s.y_test)
        return Output(out, metrics={"features": float(x_train.shape[1])})

    version = factory_version([sys.modules[__name__], make_transformer], fixed)
    return Stage(transform, space=space, name=name, version=version)


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
    :class:`Stack`. ``folds`` folds, shuffled by ``seed`` (stratified for a
    classifier), give the out-of-fold predictions. A classifier adds its class
    probabilities, a regressor its prediction (one column).
    """
    fixed = check_settings(name, space, fixed)

    def fit_base_model(upstream: TabularSplits | Stack, **params: Any) -> Output:
        stack = _as_stack(upstream, name)
        if name in stack.blocks:
            raise SpaceError(f"stage '{name}': the stack already holds a model named '{name}'")
        s = stack.splits
        with limited_threads(threads):
            model = make_model(**fixed, **params)
            regression = is_regressor(model)
            if regression:
                cv, method = KFold(folds, shuffle=True, random_state=seed), "predict"
            else:
                cv, method = (
                    StratifiedKFold(folds, shuffle=True, random_state=seed),
                    "predict_proba",
                )
            oof = cross_val_predict(model, s.x_train, s.y_train, cv=cv, method=method)
            model.fit(s.x_train, s.y_train)
            valid, test = getattr(model, method)(s.x_valid), getattr(model, method)(s.x_test)
        if regression:
            oof, valid, test = (column.reshape(-1, 1) for column in (oof, valid, test))
            metrics = {
                "oof_rmse": _rmse(s.y_train, oof[:, 0]),
                "valid_rmse": _rmse(s.y_valid, valid[:, 0]),
            }
        else:
            metrics = {
                "oof_accuracy": accuracy_score(s.y_train, model.classes_[oof.argmax(1)]),
                "valid_accuracy": accuracy_score(s.y_valid, model.classes_[valid.argmax(1)]),
                "valid_log_loss": log_loss(s.y_valid, valid, labels=model.classes_),
            }
        block = {"train": oof, "valid": valid, "test": test}
        stacked = Stack(s, {**stack.blocks, name: block})
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
    predictions and report validation and test metrics.

    A classifier reports ``log_loss`` (validation; the natural objective),
    ``accuracy``, ``auroc`` (one-vs-rest, macro) and ``test_log_loss``,
    ``test_accuracy``, ``test_auroc``; a regressor reports ``rmse``
    (validation), ``mae``, ``test_rmse`` and ``test_mae``. The test rows are
    only ever predicted, never fitted on.

    The setting ``passthrough`` (searched or fixed; default False) appends
    the features to the stacked ones; the others go to ``make_model``.
    """
    fixed = check_settings(name, space, fixed)

    def fit_meta_model(stack: Stack, **params: Any) -> dict[str, float]:
        settings = {**fixed, **params}
        passthrough = bool(settings.pop(PASSTHROUGH, False))
        s = _as_stack(stack, name).splits
        with limited_threads(threads):
            model = make_model(**settings)
            model.fit(stack.features("train", passthrough), s.y_train)
            method = "predict" if is_regressor(model) else "predict_proba"
            valid = getattr(model, method)(stack.features("valid", passthrough))
            test = getattr(model, method)(stack.features("test", passthrough))
        if method == "predict":
            return {
                "rmse": _rmse(s.y_valid, valid),
                "mae": float(mean_absolute_error(s.y_valid, valid)),
                "test_rmse": _rmse(s.y_test, test),
                "test_mae": float(mean_absolute_error(s.y_test, test)),
            }
        return {
            "log_loss": log_loss(s.y_valid, valid, labels=model.classes_),
            "accuracy": accuracy_score(s.y_valid, model.classes_[valid.argmax(1)]),
            "auroc": _auroc(s.y_valid, valid, model.classes_),
            "test_log_loss": log_loss(s.y_test, test, labels=model.classes_),
            "test_accuracy": accuracy_score(s.y_test, model.classes_[test.argmax(1)]),
            "test_auroc": _auroc(s.y_test, test, model.classes_),
        }

    version = factory_version([sys.modules[__name__], make_model], fixed)
    return Stage(fit_meta_model, space=space, name=name, version=version)


def _rmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(truth) - np.asarray(predicted)) ** 2)))


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
