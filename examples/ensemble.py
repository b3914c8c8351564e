"""Ensemble: three base models stacked under a meta-model, on 8×8 digit images as tabular data.

Runs on scikit-learn's digits (1797 rows of 64 pixel features, shipped with
the package), each trial in one process on one thread:

    memotune tune examples/ensemble.py --tuner eeipu --budget 120

Each base model is a stage that adds its 5-fold out-of-fold class
probabilities (and, refitted on all training rows, its validation and test
probabilities) to the stack; the dearest models come first, so
configurations that agree on them share the cached work:

- ``forest`` (about 0.5–3 s): extremely randomized trees;
- ``mlp`` (about 0.5–3 s): a one-hidden-layer perceptron;
- ``svm`` (about 0.3–1.5 s): an RBF support vector machine (Platt-scaled);
- ``meta`` (cheap): multinomial logistic regression on the stacked
  probabilities, optionally beside the raw pixels.

The objective is the stack's validation accuracy; test accuracy and AUROC
are reported beside it.
"""

import warnings

from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from memotune import Choice, Float, Int, Pipeline
from memotune.stages.tabular import TabularSplits, base_model_stage, meta_model_stage

# A perceptron stopped at its max_iter is a searched setting here, not a mistake.
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def load_splits() -> TabularSplits:
    """Half the rows to train on, a quarter each to validate and to test (stratified)."""
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.5, random_state=0, stratify=y
    )
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest
    )
    return TabularSplits(x_train, y_train, x_valid, y_valid, x_test, y_test)


def extra_trees(n_estimators, max_features, min_samples_leaf):
    return ExtraTreesClassifier(
        n_estimators=n_estimators,
        max_features=max_features,
        min_samples_leaf=min_samples_leaf,
        random_state=0,
        n_jobs=1,
    )


def perceptron(hidden, alpha, learning_rate_init, max_iter):
    return MLPClassifier(
        (hidden,),
        alpha=alpha,
        learning_rate_init=learning_rate_init,
        max_iter=max_iter,
        random_state=0,
    )


def rbf_svm(C, gamma):
    return CalibratedClassifierCV(SVC(C=C, gamma=gamma), method="sigmoid", cv=3, ensemble=False)


def logistic(C):
    return LogisticRegression(C=C, max_iter=500)


forest = base_model_stage(
    extra_trees,
    name="forest",
    space={
        "n_estimators": Int(16, 160, log=True),
        "max_features": Float(0.03, 0.5, log=True),
        "min_samples_leaf": Int(1, 8),
    },
)
mlp = base_model_stage(
    perceptron,
    name="mlp",
    space={
        "hidden": Int(16, 128, log=True),
        "alpha": Float(1e-5, 1.0, log=True),
        "learning_rate_init": Float(1e-3, 3e-2, log=True),
        "max_iter": Int(10, 80, log=True),
    },
)
svm = base_model_stage(
    rbf_svm,
    name="svm",
    space={"C": Float(0.1, 100.0, log=True), "gamma": Float(1e-3, 1.0, log=True)},
)
meta = meta_model_stage(
    logistic,
    space={"C": Float(1e-3, 100.0, log=True), "passthrough": Choice([False, True])},
)

pipeline = Pipeline(
    [forest, mlp, svm, meta],
    objective="accuracy",
    direction="maximize",
    inputs=load_splits(),
    name="ensemble",
)
