"""Where a tuner's trials start: how many of its BO trials reuse how deep a cached prefix.

One study of one tuner on one pipeline and seed, in this process (one core);
per prefix depth (0: every stage runs; k: stages 0..k-1 loaded from the
cache), the BO trials that started there and the budget they charged, plus
the tuner's share. It shows what an acquisition does with the cache: EEIPU
on the ensemble pipeline varies the cheap last stages of a few cached
prefixes, `memo` pays for new first stages.

    python benchmarks/trial_depths.py examples/ensemble.py --tuner memo --seed 2 --budget 120
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

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
    args = p.parse_args()
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
        )
        trials = study.run().trials
    count: Counter[int] = Counter()
    charged: defaultdict[int, float] = defaultdict(float)
    for trial in trials:
        if trial.info.get("phase") == "bo":
            depth = int(trial.info.get("prefix_depth") or 0)
            count[depth] += 1
            charged[depth] += trial.charged
    figures: dict = {"trials": len(trials), "tuner_share": budget.tuner / budget.spent}
    for depth in sorted(count):
        figures[f"bo_trials_from_depth_{depth}"] = count[depth]
        figures[f"bo_charged_from_depth_{depth}"] = round(charged[depth], 2)
    report(figures, args.json)


if __name__ == "__main__":
    main()
