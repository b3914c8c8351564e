"""What running stages on Ray costs, and what parallel trials buy.

- ``overhead_ms_per_stage``: a pipeline of no-op stages runs the same fresh
  configurations (no cache hits) through the in-process runner and through
  the Ray runner, one trial at a time; the difference per stage is Ray's
  scheduling overhead (task submission, argument resolution, the pipeline's
  deserialization in the worker, returning the record).
- ``speedup_2_workers``: a sweep of trials whose two stages each sleep 0.5 s,
  run by ``memotune.tune`` on Ray with 1 and then 2 trials in flight; the
  ratio of the two wall times.

    python benchmarks/ray_overhead.py --json out/ray_overhead.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune import Float, Pipeline, StageCache, stage, tune  # noqa: E402
from memotune.pipelines import LocalRunner  # noqa: E402
from memotune.pipelines.ray_runner import RayRunner  # noqa: E402

NOOP_STAGES = 4
SLEEP_SECONDS = 0.5


def noop_stage(index: int):
    return stage(
        lambda upstream, x: (upstream or 0) + x,
        space={"x": Float(0.0, 1.0)},
        name=f"noop{index}",
        version="1",
    )


def sleepy_stage(index: int):
    def sleepy(upstream, x):
        time.sleep(SLEEP_SECONDS)
        return {"objective": x} if index == 1 else x

    return stage(sleepy, space={"x": Float(0.0, 1.0)}, name=f"sleep{index}", version="1")


def seconds_per_trial(runner, pipeline: Pipeline, configs: list[dict]) -> float:
    """Median seconds per trial, one trial in flight at a time."""
    times = []
    for trial_id, config in enumerate(configs):
        started = time.perf_counter()
        runner.submit(trial_id, config)
        (record,) = runner.wait()
        times.append(time.perf_counter() - started)
        assert record.completed and not record.cache_hits, record.error
    return statistics.median(times)


def overhead_ms_per_stage(folder: Path, trials: int = 40) -> dict[str, float]:
    pipeline = Pipeline([noop_stage(i) for i in range(NOOP_STAGES)], name="noop")

    def configs(offset: float) -> list[dict]:
        return [
            {s.name: {"x": offset + i / (10 * trials)} for s in pipeline.stages}
            for i in range(trials)
        ]

    local = LocalRunner(pipeline, StageCache(folder / "local"))
    ray_runner = RayRunner(pipeline, StageCache(folder / "ray"))
    seconds_per_trial(ray_runner, pipeline, configs(0.5)[:5])  # start the workers
    local_seconds = seconds_per_trial(local, pipeline, configs(0.0))
    ray_seconds = seconds_per_trial(ray_runner, pipeline, configs(0.1))
    return {
        "local_ms_per_stage": 1000 * local_seconds / NOOP_STAGES,
        "ray_ms_per_stage": 1000 * ray_seconds / NOOP_STAGES,
        "overhead_ms_per_stage": 1000 * (ray_seconds - local_seconds) / NOOP_STAGES,
    }


def sweep_seconds(folder: Path, workers: int, trials: int) -> float:
    pipeline = Pipeline([sleepy_stage(0), sleepy_stage(1)], name="sleepy")
    started = time.perf_counter()
    result = tune(
        pipeline,
        tuner="random",
        trials=trials,
        workers=workers,
        seed=workers,
        study=f"sleepy-{workers}",
        storage=folder / "studies",
        cache=folder / f"cache-{workers}",
        runner="ray",
        progress=False,
        tracking=False,  # the runner's overhead, not MLflow's (tracking_overhead.py)
    )
    assert all(r.completed and not r.cache_hits for r in result.trials)
    return time.perf_counter() - started


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            figures = overhead_ms_per_stage(folder)
            sweep_seconds(folder / "warm", workers=2, trials=2)  # start two workers
            one = sweep_seconds(folder, workers=1, trials=8)
            two = sweep_seconds(folder, workers=2, trials=8)
    finally:
        ray.shutdown()
    report(
        {
            **figures,
            "sweep_seconds_1_worker": one,
            "sweep_seconds_2_workers": two,
            "speedup_2_workers": one / two,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
