"""Digits CNN: preprocessing → data-parallel CNN training on Ray Train → evaluation.

Runs on scikit-learn's digits (1797 8×8 images, shipped with the package):

    memotune tune examples/digits_cnn.py --tuner eeipu --budget 120

The trainer runs 1 or 2 DDP workers (a hyperparameter) through Ray Train, so
every trial pays Ray Train's start-up (about 20–30 s on a 2-CPU machine);
configurations that share the preprocessing settings share its output.
``examples/digits_cnn.py:epochs`` has the CNN's epochs as a fidelity.
"""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from memotune import Choice, Float, Int, Pipeline, stage
from memotune.stages.distributed import ddp_trainer
from memotune.stages.vision import SmallCNN, shift


def load_splits() -> dict:
    """Train / validation / test splits of the 8×8 images (pixel values 0–16)."""
    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=0.2, random_state=0, stratify=y_train
    )
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


@stage(space={"normalize": Choice(["scale", "standardize"]), "augment": Choice(["none", "shift"])})
def preprocess(splits, normalize, augment):
    """Normalise the pixels ("scale": to [0, 1]; "standardize": each pixel to zero mean
    and unit variance over the training images) and, with ``augment="shift"``, add
    the training images moved one pixel up, down, left and right."""
    x_train, y_train = splits["train"]
    if normalize == "scale":
        mean, std = 0.0, 16.0
    else:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-3
    if augment == "shift":
        shifted = [shift(x_train, dy, dx) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
        x_train = np.concatenate([x_train, *shifted])
        y_train = np.concatenate([y_train] * 5)

    def prepared(images):  # (n, 8, 8) → (n, 1, 8, 8), normalised
        return ((images - mean) / std).astype(np.float32)[:, None]

    return {
        "train": (prepared(x_train), y_train.astype(np.int64)),
        "val": (prepared(splits["val"][0]), splits["val"][1].astype(np.int64)),
        "test": (prepared(splits["test"][0]), splits["test"][1].astype(np.int64)),
    }


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    return {"accuracy": (logits.argmax(dim=1) == labels).float().mean().item()}


def trainer(**options):
    """The data-parallel CNN trainer of this example (``options``: e.g. ``fidelity=True``)."""
    return ddp_trainer(
        SmallCNN,
        F.cross_entropy,
        metrics=accuracy,
        space={
            "lr": Float(1e-3, 3e-2, log=True),
            "batch_size": Int(32, 256, log=True),
            "epochs": Int(3, 12),
            "weight_decay": Float(1e-6, 1e-3, log=True),
            "num_workers": Int(1, 2),
            "channels": Int(8, 32),
        },
        name="train",
        checkpoint_every=5,  # epochs take well under a second here; a report costs up to 2 s
        **options,
    )


@stage
def evaluate(trained):
    """Test accuracy of the trained CNN, with the last epoch's validation figures."""
    model = trained.build(SmallCNN)
    images, labels = trained.data["test"]
    with torch.no_grad():
        logits = model(torch.as_tensor(images))
    return {
        "accuracy": accuracy(logits, torch.as_tensor(labels))["accuracy"],
        "val_accuracy": trained.metrics["val_accuracy"],
        "train_loss": trained.metrics["train_loss"],
    }


def digits_cnn(train, name):
    return Pipeline(
        [preprocess, train, evaluate],
        objective="accuracy",
        direction="maximize",
        inputs=load_splits(),
        name=name,
    )


pipeline = digits_cnn(trainer(), "digits-cnn")

#: The same pipeline with the CNN's ``epochs`` as its fidelity: a run keeps its last
#: state in the cache, a run of the same settings with more epochs goes on from it, and
#: at the pruner's rungs (epochs 3 and 9 by default) rank 0 asks whether to stop.
#: ``memotune tune examples/digits_cnn.py:epochs --budget 300 --prune val_loss``
epochs = digits_cnn(trainer(fidelity=True), "digits-cnn-epochs")
