"""Vision: augmentation → CNN training → test-time augmentation, on 8×8 digit images.

Runs on scikit-learn's digits (1797 images, shipped with the package), in one
process per trial (torch on one thread):

    memotune tune examples/vision.py --tuner eeipu --budget 120

- ``preprocess`` (cheap): pixel normalisation and 0–4 one-pixel-shifted
  copies of each training image (more copies: better invariance, dearer
  training);
- ``train`` (the dear stage, about 0.5–5 s): a two-layer CNN, its width,
  epochs, learning rate and weight decay;
- ``postprocess`` (cheap): test-time augmentation with 1–9 shifted views,
  soft-voted at a temperature.

The objective is validation accuracy; test accuracy is reported beside it.
Configurations that share the preprocessing and training settings share the
trained network and differ only in post-processing.
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from memotune import Float, Int, Pipeline
from memotune.stages.vision import (
    ImageSplits,
    SmallCNN,
    augment_stage,
    classifier_stage,
    tta_stage,
)


def load_splits() -> ImageSplits:
    """Half the images to train on, a quarter each to validate and to test (stratified)."""
    digits = load_digits()
    x_train, x_rest, y_train, y_rest = train_test_split(
        digits.images, digits.target, test_size=0.5, random_state=0, stratify=digits.target
    )
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest
    )
    return ImageSplits(x_train, y_train, x_valid, y_valid, x_test, y_test)


preprocess = augment_stage()
train = classifier_stage(
    SmallCNN,
    space={
        "channels": Int(4, 16),
        "epochs": Int(2, 8),
        "lr": Float(1e-3, 3e-2, log=True),
        "weight_decay": Float(1e-5, 1e-1, log=True),
    },
    fixed={"batch_size": 64},
)
postprocess = tta_stage(SmallCNN)

pipeline = Pipeline(
    [preprocess, train, postprocess],
    objective="accuracy",
    direction="maximize",
    inputs=load_splits(),
    name="vision",
)
