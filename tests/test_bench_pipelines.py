"""The real pipelines the tuner benchmark runs on: each minimizes a smooth validation
objective and reports a test metric on a fixed, disjoint test split that nothing
else depends on."""

import dataclasses
import math
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from memotune import Pipeline, run
from memotune.loading import import_file
from memotune.stages.text import pydoc_text

REPO = Path(__file__).resolve().parents[1]
# The cheap configurations below stop perceptrons early on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# A cheap configuration of each bench pipeline (the whole file runs in well under a minute).
CHEAP = {
    "ensemble": {
        "svm": {"C": 1.0, "gamma": 0.03},
        "forest": {"n_estimators": 16, "max_features": 0.2, "min_samples_leaf": 4},
        "mlp": {"hidden": 16, "alpha": 1e-3, "learning_rate_init": 1e-2, "max_iter": 10},
        "meta": {"C": 1.0, "passthrough": True},
    },
    "vision": {
        "preprocess": {"normalize": "scale", "shifts": 0},
        "train": {"channels": 6, "epochs": 4, "lr": 1e-2, "weight_decay": 1e-4},
        "postprocess": {"views": 2, "temperature": 1.0},
    },
    "language": {
        "tokenize": {"vocab_size": 260},
        "teacher": {"lr": 1e-2, "steps": 30, "n_layers": 2},
        **{
            f"distill_{i}": {"lr": 1e-3, "temperature": 2.0, "weight_decay": 0.01}
            for i in (1, 2, 3)
        },
    },
    "regression": {
        "select": {"k": 6, "n_neighbors": 6, "scale": "standard"},
        "boost": {
            "learning_rate": 0.1,
            "max_iter": 30,
            "max_leaf_nodes": 8,
            "l2_regularization": 0.1,
        },
        "mlp": {"hidden": 8, "alpha": 1e-3, "learning_rate_init": 1e-2, "max_iter": 20},
        "meta": {"alpha": 1.0, "passthrough": False},
    },
}
BENCH = sorted(CHEAP)


@cache
def example(name: str):
    return import_file(REPO / "examples" / f"{name}.py")


@cache
def record(name: str, perturbed: bool = False):
    """One cheap trial of the bench pipeline ``name`` (without a cache); ``perturbed``:
    on the same inputs but with the test split's targets (or text) changed."""
    pipe = example(name).pipeline
    inputs = _perturb_test_split(pipe.inputs) if perturbed else pipe.inputs
    changed = Pipeline(
        pipe.stages,
        objective=pipe.objective,
        direction=pipe.direction,
        inputs=inputs,
        name=pipe.name,
        test_metric=pipe.test_metric,
    )
    return run(changed, CHEAP[name], cache=None)


def _perturb_test_split(inputs):
    if hasattr(inputs, "y_test"):  # rows or images: the test targets shifted by one row
        return dataclasses.replace(inputs, y_test=np.roll(inputs.y_test, 1))
    return dataclasses.replace(inputs, test=inputs.test.upper())  # text


def test_the_bench_has_at_least_four_real_pipelines():
    assert len(BENCH) >= 4


@pytest.mark.parametrize("name", BENCH)
def test_each_bench_pipeline_minimizes_a_validation_objective_beside_a_test_metric(name):
    pipe = example(name).pipeline
    assert pipe.direction == "minimize"
    assert pipe.test_metric and pipe.test_metric != pipe.objective
    assert pipe.test_metric.startswith("test_") and not pipe.objective.startswith("test_")
    assert len(pipe.stages) >= 3
    pipe.validate(CHEAP[name])


@pytest.mark.parametrize("name", BENCH)
def test_one_configuration_reports_the_objective_and_the_test_metric(name):
    pipe = example(name).pipeline
    trial = record(name)
    assert trial.completed
    objective, test = trial.metrics[pipe.objective], trial.metrics[pipe.test_metric]
    assert math.isfinite(objective) and math.isfinite(test)
    assert objective > 0 and test > 0
    # the same figure on two samples of one distribution: close, not equal
    assert objective != test and 0.5 < test / objective < 2.0
    assert all(s.compute_seconds > 0 for s in trial.stages)


@pytest.mark.parametrize("name", BENCH)
def test_the_test_split_feeds_nothing_but_the_test_metric(name):
    """Changing the test targets (or text) changes the test metric and nothing else:
    not the objective, not any stage's other metrics."""
    pipe = example(name).pipeline
    plain, perturbed = record(name), record(name, perturbed=True)
    assert perturbed.metrics[pipe.test_metric] != plain.metrics[pipe.test_metric]
    assert perturbed.metrics[pipe.objective] == plain.metrics[pipe.objective]
    for before, after in zip(plain.stages, perturbed.stages, strict=True):
        assert _held_out_removed(after.metrics) == _held_out_removed(before.metrics)


def _held_out_removed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("test_")}


# The full data set of each pipeline whose splits are rows of it.
DATA = {
    "ensemble": lambda module: module.make_data(),
    "regression": lambda module: module.make_data(),
    "vision": lambda module: (module.noisy_digits(), load_digits().target),
}


@pytest.mark.parametrize("name", sorted(DATA))
def test_row_splits_are_fixed_disjoint_and_what_the_pipeline_runs_on(name):
    module = example(name)
    rows, x, y = module.split(), *DATA[name](module)
    parts = {"train": rows.train, "valid": rows.valid, "test": rows.test}
    sets = {split: set(index.tolist()) for split, index in parts.items()}
    assert all(len(sets[s]) == len(parts[s]) > 0 for s in parts)
    assert not sets["train"] & sets["valid"]
    assert not sets["train"] & sets["test"]
    assert not sets["valid"] & sets["test"]
    assert max(max(s) for s in sets.values()) < len(y)
    again = module.split()
    for split, index in parts.items():
        np.testing.assert_array_equal(getattr(again, split), index)
        # the held-out rows may come several times (vision: one noise draw after another)
        copies = 1 if split == "train" else getattr(module, "HELD_OUT_DRAWS", 1)
        runs_on = [getattr(module.pipeline.inputs, f"{v}_{split}") for v in "xy"]
        assert len(runs_on[0]) == len(runs_on[1]) == copies * len(index)
        np.testing.assert_array_equal(runs_on[0][: len(index)], x[index])
        np.testing.assert_array_equal(runs_on[1], np.tile(y[index], copies))
    # no row of one split is a copy of a row of another
    flat = np.asarray(x).reshape(len(y), -1)
    seen = {split: {flat[i].tobytes() for i in index} for split, index in parts.items()}
    assert not seen["train"] & seen["valid"] and not seen["train"] & seen["test"]
    assert not seen["valid"] & seen["test"]


def test_vision_scores_each_held_out_digit_on_independent_noise_draws():
    module = example("vision")
    rows, inputs = module.split(), module.pipeline.inputs
    draws = module.HELD_OUT_DRAWS
    assert draws > 1
    for split in ("valid", "test"):
        index = getattr(rows, split)
        images = getattr(inputs, f"x_{split}").reshape(draws, len(index), 8, 8)
        for seed in range(draws):
            np.testing.assert_array_equal(images[seed], module.noisy_digits(seed=seed)[index])
        # the draws of one digit differ, by the noise's standard deviation or so
        spread = images.std(axis=0).mean()
        assert 0.5 * module.NOISE < spread * np.sqrt(draws / (draws - 1)) < 1.5 * module.NOISE


def test_text_splits_are_fixed_and_share_no_paragraph():
    splits = example("language").pipeline.inputs
    assert splits == pydoc_text(valid_fraction=0.1, test_fraction=0.1)
    train, valid, test = (_paragraphs(t) for t in (splits.train, splits.valid, splits.test))
    assert train and valid and test
    assert not train & valid and not train & test and not valid & test
    # whole topics, of very unequal length, go to each split
    total = sum(len(t) for t in (splits.train, splits.valid, splits.test))
    assert len(splits.train) > 0.6 * total and len(splits.test) > 0.05 * total


def _paragraphs(text: str) -> set[str]:
    return {p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()}
