"""Ensemble: three base models stacked under a meta-model, on a noisy generated task.

The data are generated (scikit-learn's ``make_classification``: 10000 rows,
20 features of which 10 informative, 4 classes in 2 clusters each, 10% of the
labels flipped at random), split once, stratified, into 2000 training, 4000
validation and 4000 test rows. The held-out splits are large because the
labels are noisy: with 1000 rows each, the validation log-loss of the
incumbents the GP tuners chose predicted their test log-loss with a rank
correlation of only 0.34 (25 runs, ``docs/bench/before-larger-splits``), so
the benchmark could not tell those tuners apart. Each trial runs in one
process on one thread:

    memotune tune examples/ensemble.py --tuner eeipu --budget 120

Each base model is a stage that adds its 3-fold out-of-fold class
probabilities (and, refitted on all training rows, its validation and test
probabilities) to the stack; the dearest models come first, so
configurations that agree on them share the cached work:

- ``svm`` (the dearest, about 2–4 s): an RBF support vector machine
  (Platt-scaled);
- ``forest`` (about 0.3–2.2 s): extremely randomized trees;
- ``mlp`` (about 0.1–1.4 s): a one-hidden-layer perceptron;
- ``meta`` (about 0.04–0.2 s): multinomial logistic regression on the stacked
  probabilities, optionally beside the raw features.

A full trial takes about 3.5–7 s. The objective is the stack's validation
log-loss (minimized; the flipped labels keep it far above 0); the test
metric, ``test_log_loss``, is the same on the test rows, which nothing is
fitted on and the tuner never sees.
"""

import warnings

from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from memotune import Choice, Float, Int, Pipeline
from memotune.stages.splits import SplitRows, split_rows
from memotune.stages.tabular import TabularSplits, base_model_stage, meta_model_stage

# A perceptron stopped at its max_iter is a searched setting here, not a mistake.
warnings.filterwarnings("ignore", category=ConvergenceWarning)


def make_data() -> tuple:
    """The generated rows and labels (the same on every call)."""
    return make_classification(
        n_samples=10000,
        n_features=20,
        n_informative=10,
        n_redundant=4,
        n_classes=4,
        n_clusters_per_class=2,
        class_sep=0.8,
        flip_y=0.1,
        random_state=0,
    )


def split() -> SplitRows:
    """2000 training, 4000 validation and 4000 test rows (stratified, fixed)."""
    return split_rows(make_data()[1], valid=4000, test=4000, seed=0, stratify=True)


def load_splits() -> TabularSplits:
    return split().take(TabularSplits, *make_data())


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


FOLDS = 3  # out-of-fold predictions per base model: 4 fits each
svm = base_model_stage(
    rbf_svm,
    name="svm",
    space={"C": Float(0.1, 100.0, log=True), "gamma": Float(3e-3, 0.3, log=True)},
    folds=FOLDS,
)
forest = base_model_stage(
    extra_trees,
    name="forest",
    space={
        "n_estimators": Int(16, 160, log=True),
        "max_features": Float(0.05, 0.6, log=True),
        "min_samples_leaf": Int(1, 16, log=True),
    },
    folds=FOLDS,
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
    folds=FOLDS,
)
meta = meta_model_stage(
    logistic,
    space={"C": Float(1e-3, 100.0, log=True), "passthrough": Choice([False, True])},
)

pipeline = Pipeline(
    [svm, forest, mlp, meta],
    objective="log_loss",
    direction="minimize",
    inputs=load_splits(),
    name="ensemble",
    test_metric="test_log_loss",
)
