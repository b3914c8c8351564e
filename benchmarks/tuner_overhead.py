"""EEIPU's own time per proposal as observations grow, on synthetic-3.

One EEIPU study runs on synthetic-3 until 200+ trials are observed; the
tuner's seconds for each proposal (model fitting, on the schedule it follows
in a real study, plus acquisition optimization) are averaged over the
proposals made with about 50 and about 200 observations.

    python benchmarks/tuner_overhead.py --json out/tuner_overhead.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune.cache import StageCache  # noqa: E402
from memotune.stages.synthetic import synthetic_pipeline  # noqa: E402
from memotune.tuner.budget import Budget, ProposalCharge  # noqa: E402
from memotune.tuner.study import Study  # noqa: E402

WINDOW = 10  # proposals on each side of the observation count


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(2)
    pipeline = synthetic_pipeline("synthetic-3")
    with tempfile.TemporaryDirectory() as folder:
        result = Study(
            pipeline,
            name="overhead",
            budget=Budget.for_pipeline(pipeline, trials=200 + WINDOW + 1),
            tuner="eeipu",
            seed=0,
            storage=Path(folder) / "studies",
            cache=StageCache(Path(folder) / "cache"),
        ).run()
    # trial i saw i observations
    seconds = [ProposalCharge.from_record(r).seconds for r in result.trials]

    def around(n: int) -> float:
        return statistics.mean(seconds[n - WINDOW : n + WINDOW])

    report(
        {
            "seconds_per_proposal_50": around(50),
            "seconds_per_proposal_200": around(200),
            "max_seconds_per_proposal": max(seconds),
            "observations": len(seconds),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
