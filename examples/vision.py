"""Vision: augmentation → CNN training → test-time augmentation, on noisy 8×8 digits.

Runs on scikit-learn's digits (1797 images, shipped with the package) with
Gaussian pixel noise (standard deviation 4 on the 0–16 scale, seeded) added
to every image, split once, stratified, into 500 training, 600 validation
and 600 test digits. The held-out digits are each drawn with four independent
noise draws (2400 validation and 2400 test images), so that a model's score
depends less on one draw of the noise (one draw moves it by about 0.03,
though mostly alike for every model: ``benchmarks/noise_draws.py``). One
process per trial, torch on one thread:

    memotune tune examples/vision.py --tuner eeipu --budget 120

- ``preprocess`` (cheap, under 0.01 s): pixel normalisation and 0–4
  one-pixel-shifted copies of each training image (more copies: better
  invariance, dearer training);
- ``train`` (the dear stage, about 0.2–6.5 s): a two-layer CNN, its width,
  epochs, learning rate and weight decay;
- ``postprocess`` (about 0.05–2 s): test-time augmentation with 1–9
  shifted views, soft-voted at a temperature.

A full trial takes about 0.3–8 s. The objective is the
validation negative log-likelihood, ``nll`` (minimized; the noise keeps the
best models near 90% accuracy, so it stays far above 0); the test metric,
``test_nll``, is the same on the test images, which nothing is fitted on and
the tuner never sees. Configurations that share the preprocessing and
training settings share the trained network and differ only in
post-processing.

``examples/vision.py:epochs`` is the same pipeline with an epochs fidelity, for
early stopping and for continuing training from the cache.
"""

import numpy as np
from sklearn.datasets import load_digits

from memotune import Float, Int, Pipeline
from memotune.stages.splits import SplitRows, split_rows
from memotune.stages.vision import (
    ImageSplits,
    SmallCNN,
    augment_stage,
    classifier_stage,
    tta_stage,
)

TRAIN_IMAGES = 500
NOISE = 4.0
#: Independent noise draws of each validation and test digit (the training
#: digits have one, the first).
HELD_OUT_DRAWS = 4


def split() -> SplitRows:
    """500 training, 600 validation and 600 test digits (stratified, fixed)."""
    labels = load_digits().target
    return split_rows(labels, valid=600, test=600, train=TRAIN_IMAGES, seed=0, stratify=True)


def noisy_digits(noise: float = NOISE, seed: int = 0) -> np.ndarray:
    """The digit images (pixels 0–16) with Gaussian noise of standard deviation
    ``noise`` added, clipped to 0–16 (the same on every call)."""
    images = load_digits().images
    rng = np.random.default_rng(seed)
    return np.clip(images + rng.normal(0.0, noise, images.shape), 0.0, 16.0)


def load_splits() -> ImageSplits:
    """The training digits of noise draw 0; the validation and test digits of draws
    0 to ``HELD_OUT_DRAWS - 1``, stacked draw after draw."""
    rows, labels = split(), load_digits().target
    draws = [noisy_digits(seed=seed) for seed in range(HELD_OUT_DRAWS)]

    def held_out(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([d[index] for d in draws]), np.tile(labels[index], len(draws))

    return ImageSplits(
        draws[0][rows.train], labels[rows.train], *held_out(rows.valid), *held_out(rows.test)
    )


TRAIN_SPACE = {
    "channels": Int(6, 24, log=True),
    "epochs": Int(4, 16),
    "lr": Float(1e-3, 3e-2, log=True),
    "weight_decay": Float(1e-5, 1e-1, log=True),
}

preprocess = augment_stage()
train = classifier_stage(SmallCNN, space=TRAIN_SPACE, fixed={"batch_size": 32})
postprocess = tta_stage(SmallCNN)

pipeline = Pipeline(
    [preprocess, train, postprocess],
    objective="nll",
    direction="minimize",
    inputs=load_splits(),
    name="vision",
    test_metric="test_nll",
)

#: The same pipeline with ``epochs`` as the training stage's fidelity: after every
#: epoch it keeps a checkpoint, and at the pruner's rungs it reports the validation NLL
#: of one view (``valid_nll``; ``calibrated_nll`` at its best temperature, as the TTA
#: stage will set one) and asks whether to stop; a trial with more epochs goes on from
#: a cached run's checkpoint. ``memotune tune examples/vision.py:epochs --prune
#: calibrated_nll``
epochs = Pipeline(
    [
        preprocess,
        classifier_stage(SmallCNN, space=TRAIN_SPACE, fixed={"batch_size": 32}, fidelity=True),
        postprocess,
    ],
    objective="nll",
    direction="minimize",
    inputs=pipeline.inputs,
    name="vision-epochs",
    test_metric="test_nll",
)
