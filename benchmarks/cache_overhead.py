"""What a cache hit costs next to computing the stage.

A stage that takes 1 s to compute returns either a 100 MB numpy array or a
small object. After one run stores it, a hit (key computation, index look-up,
signature check over the whole file, load) is timed several times; the median
is reported as a ratio to the stage's measured compute time. The object file
is in the OS page cache, as it is right after a stage writes it.

    python benchmarks/cache_overhead.py --json out/cache_overhead.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune import Choice, Pipeline, StageCache, stage  # noqa: E402
from memotune.pipelines.execution import execute_stage, load_deepest  # noqa: E402

COMPUTE_SECONDS = 1.0
LARGE_BYTES = 100 * 2**20


@stage(space={"kind": Choice(["large", "small"])})
def produce(inputs, kind):
    started = time.perf_counter()
    if kind == "large":
        output = np.random.default_rng(0).random(LARGE_BYTES // 8)
    else:
        output = {"accuracy": 0.97, "epochs": 12, "notes": "a small stage output"}
    time.sleep(max(0.0, COMPUTE_SECONDS - (time.perf_counter() - started)))
    return output


@stage
def summarize(value):
    return 0.0


def hit_seconds(pipeline: Pipeline, cache: StageCache, kind: str, repeats: int) -> dict:
    config = {"produce": {"kind": kind}}
    plans = pipeline.plan(config)
    _, _, records = load_deepest(pipeline, plans, cache)  # nothing cached yet: compute and store
    assert not records
    _, computed = execute_stage(pipeline, plans[0], None, cache, [])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        depth, value, _ = load_deepest(pipeline, pipeline.plan(config), cache)
        times.append(time.perf_counter() - started)
        assert depth == 1
        del value
    return {"compute": computed.compute_seconds, "hit": statistics.median(times)}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    pipeline = Pipeline([produce, summarize], cost_unit="seconds")
    with tempfile.TemporaryDirectory() as folder:
        cache = StageCache(Path(folder) / "cache", secret="benchmark-secret-0123456789")
        large = hit_seconds(pipeline, cache, "large", repeats=7)
        small = hit_seconds(pipeline, cache, "small", repeats=51)
    report(
        {
            "hit_seconds_100mb": large["hit"],
            "hit_seconds_small": small["hit"],
            "compute_seconds": statistics.mean([large["compute"], small["compute"]]),
            "hit_ratio_100mb": large["hit"] / large["compute"],
            "hit_ratio_small": small["hit"] / small["compute"],
        },
        args.json,
    )


if __name__ == "__main__":
    main()
