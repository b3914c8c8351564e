"""Does a pruning metric predict the objective? Its agreement at each ASHA rung.

One study of a tuner on one pipeline and seed, in this process (one core),
with an ASHA rule on METRIC that records every report at its rungs but stops
no trial; then, per rung, how many finished trials reported there and the
Spearman correlation of what they reported with their objective, signed so
that agreeing is positive (what :meth:`memotune.ASHA.agreement` computes to
decide whether the rung may stop trials), and how many of the best third of
them (by objective) were among the best third at the rung: those that ASHA,
judging all of them at once, would have let go on.

    python benchmarks/rung_agreement.py examples/vision.py:epochs valid_nll
    python benchmarks/rung_agreement.py examples/language.py:steps valid_byte_perplexity \
        --also valid_loss --seed 1
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune import ASHA  # noqa: E402
from memotune.cache import StageCache  # noqa: E402
from memotune.loading import load_pipeline  # noqa: E402
from memotune.tuner.budget import Budget  # noqa: E402
from memotune.tuner.study import Study  # noqa: E402


class Watching(ASHA):
    """ASHA that keeps its rungs and the finished trials' objectives, and stops nobody."""

    def should_prune(self, trial_id, stage, step, metrics) -> bool:
        super().should_prune(trial_id, stage, step, metrics)
        return False


def best_kept(rule: ASHA, step: int) -> float | None:
    """The share of the best ``1/reduction`` of the finished trials that reported at rung
    ``step`` (by objective) that were also among the best ``1/reduction`` there."""
    rung = rule.rungs.get(step, {})
    finished = [t for t in rule.outcomes if t in rung]
    keep = len(finished) // rule.reduction
    if keep == 0:
        return None
    sign = -1 if rule.maximize else 1
    by_objective = sorted(finished, key=lambda t: sign * rule.outcomes[t])[:keep]
    by_rung = sorted(finished, key=lambda t: rung[t] if rule.mode == "min" else -rung[t])[:keep]
    return len(set(by_objective) & set(by_rung)) / keep


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("pipeline", help="FILE.py[:NAME] with a fidelity")
    p.add_argument("metric", help="the metric its stage reports at the rungs")
    p.add_argument("--also", nargs="*", default=[], help="other metrics reported there")
    p.add_argument("--mode", default="min", choices=("min", "max"))
    p.add_argument("--tuner", default="memo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=120.0)
    args = p.parse_args()
    pipeline = load_pipeline(args.pipeline)
    with tempfile.TemporaryDirectory() as folder:
        study = Study(
            pipeline,
            name="agreement",
            budget=Budget.for_pipeline(pipeline, budget=args.budget),
            tuner=args.tuner,
            seed=args.seed,
            storage=Path(folder) / "studies",
            cache=StageCache(Path(folder) / "cache"),
            pruner=Watching(args.metric, mode=args.mode, min_evidence=2),
        )
        trials = study.run().trials
        rule = study.pruner
    figures: dict = {"trials": len(trials), "finished": sum(t.completed for t in trials)}
    for metric in [args.metric, *args.also]:
        watched = Watching(metric, mode=args.mode, min_evidence=2).for_pipeline(pipeline)
        for trial in trials:
            watched.observe(trial)
        for step in sorted(rule.rungs):
            finished = sum(t in watched.outcomes for t in watched.rungs.get(step, {}))
            figures[f"{metric} at {step}: finished trials"] = finished
            figures[f"{metric} at {step}: agreement"] = watched.agreement(step)
            figures[f"{metric} at {step}: best third kept"] = best_kept(watched, step)
    report(figures, args.json)


if __name__ == "__main__":
    main()
