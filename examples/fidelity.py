"""Fidelity: a perceptron trained for a searched number of epochs, stopped early when
it falls behind, continued from the cache when a later trial asks for more epochs.

Runs on scikit-learn's digits (1797 8×8 images, shipped with the package), split
once into training, validation and test images:

    memotune tune examples/fidelity.py --budget 60 --prune valid_loss

``train`` declares ``epochs`` its fidelity. After every epoch it reports the
validation loss, keeps a checkpoint (weights, optimizer and shuffling state) and
asks the study whether to go on. A trial whose settings match a cached run
except for more epochs starts from that run's last checkpoint and trains only
the epochs it lacks; the result is the same as training from scratch.
"""

import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from memotune import Float, Int, Pipeline, TrialPruned, stage


def load_data():
    digits = load_digits()
    x_train, x_rest, y_train, y_rest = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.5, random_state=0, stratify=digits.target
    )
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest
    )
    return x_train, y_train, x_valid, y_valid, x_test, y_test


@stage(space={"components": Int(8, 48)})
def features(data, components):
    """PCA fitted on the training images, applied to every split."""
    x_train, y_train, x_valid, y_valid, x_test, y_test = data
    pca = PCA(components, random_state=0).fit(x_train)

    def tensor(x):
        return torch.tensor(pca.transform(x), dtype=torch.float32)

    labels = [torch.tensor(y) for y in (y_train, y_valid, y_test)]
    return [tensor(x_train), labels[0], tensor(x_valid), labels[1], tensor(x_test), labels[2]]


@stage(
    space={
        "hidden": Int(16, 128, log=True),
        "lr": Float(1e-3, 0.3, log=True),
        "epochs": Int(1, 27),
    },
    fidelity="epochs",
)
def train(data, hidden, lr, epochs, context):
    x_train, y_train, x_valid, y_valid, x_test, y_test = data
    if context.resume is None:  # a fresh start
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(x_train.shape[1], hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 10),
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        shuffle = torch.Generator().manual_seed(0)
    else:  # the state a cached run kept after context.resume.step epochs
        model, optimizer, shuffle_state = context.resume.state
        shuffle = torch.Generator()
        shuffle.set_state(shuffle_state)
    start = context.resume.step if context.resume else 0
    loss = torch.nn.functional.cross_entropy
    for epoch in range(start + 1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(x_train), generator=shuffle).split(32):
            optimizer.zero_grad()
            loss(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            context.report(epoch, valid_loss=loss(model(x_valid), y_valid).item())
        context.checkpoint(epoch, (model, optimizer, shuffle.get_state()))
        if context.should_prune():
            raise TrialPruned()
    with torch.no_grad():
        return {
            "valid_loss": loss(model(x_valid), y_valid).item(),
            "test_loss": loss(model(x_test), y_test).item(),
        }


pipeline = Pipeline(
    [features, train],
    objective="valid_loss",
    direction="minimize",
    inputs=load_data(),
    name="fidelity",
    test_metric="test_loss",
)
