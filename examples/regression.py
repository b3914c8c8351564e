"""Regression: feature selection → gradient boosting → perceptron → ridge stack.

The data are generated (scikit-learn's ``make_friedman1``: 4000 rows of 30
uniform features, of which only 5 enter the target, a sum of a sine of a
product, a square and linear terms, plus Gaussian noise of standard
deviation 0.5), split once into 1500 training, 1000 validation and 1000 test
rows (500 rows are left unused). Each trial runs in one process on one
thread:

    memotune tune examples/regression.py --tuner eeipu --budget 120

- ``select`` (about 0.25–0.6 s): scaling (standard or quantile-to-normal)
  and the ``k`` features of highest mutual information with the target,
  estimated with ``n_neighbors`` neighbours (with few neighbours the
  quadratic feature ranks below noise), fitted on the training rows;
- ``boost`` (about 0.2–3 s): histogram gradient boosting;
- ``mlp`` (about 0.2–2.5 s): a two-hidden-layer perceptron;
- ``meta`` (about 0.01 s): ridge regression on the two models' 3-fold
  out-of-fold predictions, optionally beside the selected features.

A full trial takes about 1–4.5 s. The objective is the stack's validation
root-mean-squared error, ``rmse`` (minimized; the noise alone puts the
optimum at 0.5, random settings score 0.85–2.1 and good hand-picked ones
about 0.63); the test metric, ``test_rmse``, is the same on the test rows,
which nothing is fitted on and the tuner never sees. Configurations that
agree on the selection and the boosting settings share the cached boosted
model.
"""

import warnings
from functools import partial

from sklearn.datasets import make_friedman1
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import SelectKBest, mutual_info_regression
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler

from memotune import Choice, Float, Int, Pipeline
from memotune.stages.splits import SplitRows, split_rows
from memotune.stages.tabular import (
    TabularSplits,
    base_model_stage,
    feature_stage,
    meta_model_stage,
)

# A perceptron stopped at its max_iter is a searched setting here, not a mistake.
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def make_data() -> tuple:
    """The generated rows and targets (the same on every call)."""
    return make_friedman1(n_samples=4000, n_features=30, noise=0.5, random_state=0)


def split() -> SplitRows:
    """1500 training, 1000 validation and 1000 test rows (fixed)."""
    return split_rows(make_data()[1], valid=1000, test=1000, train=1500, seed=0)


def load_splits() -> TabularSplits:
    return split().take(TabularSplits, *make_data())


def selection(k, n_neighbors, scale):
    scaler = (
        StandardScaler()
        if scale == "standard"
        else QuantileTransformer(output_distribution="normal", random_state=0)
    )
    score = partial(mutual_info_regression, n_neighbors=n_neighbors, random_state=0)
    return make_pipeline(scaler, SelectKBest(score, k=k))


def boosting(learning_rate, max_iter, max_leaf_nodes, l2_regularization):
    return HistGradientBoostingRegressor(
        learning_rate=learning_rate,
        max_iter=max_iter,
        max_leaf_nodes=max_leaf_nodes,
        l2_regularization=l2_regularization,
        early_stopping=False,
        random_state=0,
    )


def perceptron(hidden, alpha, learning_rate_init, max_iter):
    return MLPRegressor(
        hidden_layer_sizes=(hidden, hidden),
        alpha=alpha,
        learning_rate_init=learning_rate_init,
        max_iter=max_iter,
        random_state=0,
    )


FOLDS = 3  # out-of-fold predictions per base model: 4 fits each
select = feature_stage(
    selection,
    name="select",
    space={
        "k": Int(3, 30),
        "n_neighbors": Int(2, 12),
        "scale": Choice(["standard", "quantile"]),
    },
)
boost = base_model_stage(
    boosting,
    name="boost",
    space={
        "learning_rate": Float(0.02, 0.3, log=True),
        "max_iter": Int(20, 200, log=True),
        "max_leaf_nodes": Int(4, 64, log=True),
        "l2_regularization": Float(1e-4, 10.0, log=True),
    },
    folds=FOLDS,
)
mlp = base_model_stage(
    perceptron,
    name="mlp",
    space={
        "hidden": Int(8, 64, log=True),
        "alpha": Float(1e-5, 1.0, log=True),
        "learning_rate_init": Float(1e-3, 3e-2, log=True),
        "max_iter": Int(20, 100, log=True),
    },
    folds=FOLDS,
)
meta = meta_model_stage(
    Ridge,
    space={"alpha": Float(1e-3, 1e3, log=True), "passthrough": Choice([False, True])},
)

pipeline = Pipeline(
    [select, boost, mlp, meta],
    objective="rmse",
    direction="minimize",
    inputs=load_splits(),
    name="regression",
    test_metric="test_rmse",
)
