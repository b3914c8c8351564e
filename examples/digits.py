"""Digits: kernel-PCA features → logistic regression → evaluation.

Runs on scikit-learn's digits (1797 8×8 images, shipped with the package):

    memotune tune examples/digits.py --tuner eeipu --budget 60

Configurations that share the feature settings share the kernel PCA.
"""

from sklearn.datasets import load_digits
from sklearn.decomposition import KernelPCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from memotune import Choice, Float, Int, Pipeline, stage


def load_data():
    digits = load_digits()
    return train_test_split(
        digits.data / 16.0, digits.target, test_size=0.3, random_state=0, stratify=digits.target
    )


@stage(
    space={
        "n_components": Int(8, 64),
        "kernel": Choice(["rbf", "poly", "cosine"]),
        "gamma": Float(0.005, 0.5, log=True),
    }
)
def features(data, n_components, kernel, gamma):
    """Kernel PCA fitted on the training images, applied to both splits."""
    x_train, x_test, y_train, y_test = data
    kpca = KernelPCA(n_components=n_components, kernel=kernel, gamma=gamma, random_state=0)
    return kpca.fit_transform(x_train), kpca.transform(x_test), y_train, y_test


@stage(space={"C": Float(1e-3, 1e2, log=True), "max_iter": Int(50, 300)})
def train(data, C, max_iter):
    x_train, x_test, y_train, y_test = data
    model = LogisticRegression(C=C, max_iter=max_iter, tol=1e-3).fit(x_train, y_train)
    return model, x_test, y_test


@stage
def evaluate(fitted):
    model, x_test, y_test = fitted
    return {"accuracy": float(model.score(x_test, y_test))}


pipeline = Pipeline(
    [features, train, evaluate],
    objective="accuracy",
    direction="maximize",
    inputs=load_data(),
    name="digits",
)
