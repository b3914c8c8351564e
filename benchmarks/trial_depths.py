"""Where a tuner's trials start: how many of its BO trials reuse how deep a cached prefix.

One study of one tuner on one pipeline and seed, in this process (one core);
per prefix depth (0: every stage runs; k: stages 0..k-1 loaded from the
cache), the BO trials that started there and the budget they charged, plus
the tuner's share. Training runs the tuner continued from a cached
checkpoint (``resumes_from``) count apart, as ``continued``. Per kind it also
counts the trials that improved on the best objective seen before them, and
with ``--prune METRIC`` the study stops trials with ASHA as ``memotune tune
--prune`` does. It shows what an acquisition does with the cache: EEIPU
on the ensemble pipeline varies the cheap last stages of a few cached
prefixes, `memo` pays for new first stages.

    python benchmarks/trial_depths.py examples/ensemble.py --tuner memo --seed 2 --budget 120
    python benchmarks/trial_depths.py examples/vision.py:epochs --seed 1 --prune calibrated_nll
"""

from __future__ import annotations

import math
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune import ASHA  # noqa: E402
from memotune.cache import StageCache  # noqa: E402
from memotune.loading import load_pipeline  # noqa: E402
from memotune.tuner.budget import Budget  # noqa: E402
from memotune.tuner.study import Study  # noqa: E402


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("pipeline", help="FILE.py[:NAME], synthetic-3 or synthetic-10")
    p.add_argument("--tuner", default="memo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=120.0)
    p.add_argument("--prune", metavar="METRIC", help="stop trials with ASHA on METRIC (minimized)")
    args = p.parse_args()
    torch.set_num_threads(1)  # one core, as each of memotune bench's runs has
    pipeline = load_pipeline(args.pipeline)
    budget = Budget.for_pipeline(pipeline, budget=args.budget)
    with tempfile.TemporaryDirectory() as folder:
        study = Study(
            pipeline,
            name="depths",
            budget=budget,
            tuner=args.tuner,
            seed=args.seed,
            storage=folder,
            cache=StageCache(Path(folder) / "cache"),
            pruner=ASHA(args.prune) if args.prune else None,
        )
        trials = study.run().trials
    count: Counter[str] = Counter()
    improved: Counter[str] = Counter()
    charged: defaultdict[str, float] = defaultdict(float)
    sign = 1.0 if pipeline.maximize else -1.0
    best = -math.inf
    for trial in trials:
        value = -math.inf if trial.objective is None else sign * trial.objective
        if trial.info.get("phase") == "bo":
            kind = (
                "continued"
                if trial.info.get("resumes_from") is not None
                else f"from_depth_{int(trial.info.get('prefix_depth') or 0)}"
            )
            count[kind] += 1
            charged[kind] += trial.charged
            improved[kind] += value > best
        best = max(best, value)
    figures: dict = {
        "trials": len(trials),
        "pruned": sum(t.pruned for t in trials),
        "tuner_share": budget.tuner / budget.spent,
    }
    for kind in sorted(count):
        figures[f"bo_trials_{kind}"] = count[kind]
        figures[f"bo_charged_{kind}"] = round(charged[kind], 2)
        figures[f"bo_improving_{kind}"] = improved[kind]
    report(figures, args.json)


if __name__ == "__main__":
    main()
