"""Where a tuner's trials start: how many of its BO trials reuse how deep a cached prefix.

One study of one tuner on one pipeline and seed, in this process (one core);
per prefix depth (0: every stage runs; k: stages 0..k-1 loaded from the
cache), the BO trials that started there and the budget they charged, plus
the tuner's share. Training runs the tuner continued from a cached
checkpoint (``resumes_from``) count apart, as ``continued``. Per kind it also
counts the trials that improved on the best objective seen before them, and
how many were an optimization's own choice (``chosen``) or a later member of
the batch it proposed (``filled_in``, memo's ``queued`` proposals), and with
``--prune METRIC`` the study stops trials with ASHA as ``memotune tune
--prune`` does. It shows what an acquisition does with the cache: EEIPU
on the ensemble pipeline varies the cheap last stages of a few cached
prefixes, `memo` pays for new first stages. ``first_stage_outputs`` counts the
distinct first-stage outputs the study computed.

    python benchmarks/trial_depths.py examples/ensemble.py --tuner memo --seed 2 --budget 120
    python benchmarks/trial_depths.py examples/vision.py:epochs --seed 1 --prune calibrated_nll
"""

from __future__ import annotations

import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import report, run_study, study_parser  # noqa: E402

from memotune import ASHA  # noqa: E402


def main() -> None:
    p = study_parser(__doc__.splitlines()[0])
    p.add_argument("--prune", metavar="METRIC", help="stop trials with ASHA on METRIC (minimized)")
    args = p.parse_args()
    pipeline, budget, trials = run_study(args, ASHA(args.prune) if args.prune else None)
    count: Counter[str] = Counter()
    improved: Counter[str] = Counter()
    filled_in: Counter[str] = Counter()
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
            filled_in[kind] += bool(trial.info.get("queued"))
        best = max(best, value)
    figures: dict = {
        "trials": len(trials),
        "pruned": sum(t.pruned for t in trials),
        "tuner_share": budget.tuner / budget.spent,
        "first_stage_outputs": len({t.stages[0].key for t in trials if t.stages}),
    }
    for kind in sorted(count):
        figures[f"bo_trials_{kind}"] = count[kind]
        figures[f"bo_charged_{kind}"] = round(charged[kind], 2)
        figures[f"bo_improving_{kind}"] = improved[kind]
        figures[f"bo_chosen_{kind}"] = count[kind] - filled_in[kind]
        figures[f"bo_filled_in_{kind}"] = filled_in[kind]
    report(figures, args.json)


if __name__ == "__main__":
    main()
