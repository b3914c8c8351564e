"""How much one draw of the pixel noise moves the vision pipeline's validation score.

Trains ``--models`` CNNs of random settings from ``examples/vision.py``'s
search space (one process, one thread), then scores each, with its own
random test-time augmentation, on ``--draws`` independent noise draws of the
600 validation digits and of the 600 test digits. It reports the spread of a
model's validation NLL across draws (what one draw adds to a score), the
spread across models, and how far the validation NLL on one draw and on all
draws strays from the test NLL on all of them (the smaller, the better the
tuner's objective stands for the test score it is judged on) and their rank
correlations; over all the models and over the best third by test NLL,
where tuners' incumbents are.

    python benchmarks/noise_draws.py --models 40 --draws 4
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune.loading import import_file  # noqa: E402
from memotune.stages.vision import ImageSplits  # noqa: E402
from memotune.tuner.encoding import SpaceEncoder  # noqa: E402

EXAMPLE = Path(__file__).parent.parent / "examples" / "vision.py"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=40)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    module = import_file(EXAMPLE)
    pipeline, encoder = module.pipeline, SpaceEncoder(module.pipeline)
    rows, labels = module.split(), module.load_digits().target
    # validation draws 0..d-1 and test draws d..2d-1: no noise is shared between them
    draws = [module.noisy_digits(seed=s) for s in range(2 * args.draws)]
    base = pipeline.inputs
    generator = torch.Generator().manual_seed(args.seed)
    valid, test = [], []
    for _ in range(args.models):
        config = encoder.decode(torch.rand(encoder.dim, generator=generator, dtype=torch.float64))
        prepared = _value(pipeline.stages[0].fn(base, **config["preprocess"]))
        trained = _value(pipeline.stages[1].fn(prepared, **config["train"]))
        tta, tta_settings = pipeline.stages[2].fn, config["postprocess"]
        scores = []
        for valid_draw, test_draw in zip(draws[: args.draws], draws[args.draws :], strict=True):
            splits = ImageSplits(
                base.x_train,
                base.y_train,
                valid_draw[rows.valid],
                labels[rows.valid],
                test_draw[rows.test],
                labels[rows.test],
            )
            data = dataclasses.replace(prepared, splits=splits)
            scores.append(tta(dataclasses.replace(trained, data=data), **tta_settings))
        valid.append([s["nll"] for s in scores])
        test.append([s["test_nll"] for s in scores])
    valid, test = np.array(valid), np.array(test)
    best = np.argsort(test.mean(1))[: max(3, args.models // 3)]
    figures = {"models": args.models, "draws": args.draws}
    for name, rows in (("all", slice(None)), ("best_third", best)):
        figures |= {f"{name}_{k}": v for k, v in _agreement(valid[rows], test[rows]).items()}
    report(figures, args.json)


def _agreement(valid: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Per model (rows) and draw (columns): how much one draw moves the validation NLL,
    and how far the validation NLL of one draw and of all of them strays from the test
    NLL of all draws (spread about it, rank correlation with it)."""
    one, every, target = valid[:, 0], valid.mean(1), test.mean(1)
    return {
        "valid_sd_across_draws": float(valid.std(1, ddof=1).mean()),
        "valid_sd_across_models": float(every.std(ddof=1)),
        "sd_valid_one_draw_minus_test": float((one - target).std(ddof=1)),
        "sd_valid_all_draws_minus_test": float((every - target).std(ddof=1)),
        "spearman_one_draw_test": float(stats.spearmanr(one, target)[0]),
        "spearman_all_draws_test": float(stats.spearmanr(every, target)[0]),
    }


def _value(output):
    return getattr(output, "value", output)


if __name__ == "__main__":
    main()
