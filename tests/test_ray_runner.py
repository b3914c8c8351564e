"""The Ray runner on one node: stages as tasks, parallel trials, shared in-flight
work, worker deaths, and outputs that never pass through the driver."""

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from memotune import Float, Int, Pipeline, StageCache, stage, tune
from memotune.pipelines.ray_runner import RayRunner
from memotune.runners import open_runner


@pytest.fixture
def log_dir(tmp_path):
    """A folder the stages (in Ray workers) write what they did to."""
    folder = tmp_path / "log"
    folder.mkdir()
    return folder


def events(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.open()]


def note(folder: str, **event) -> None:
    with open(Path(folder) / f"{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "time": time.time(), **event}) + "\n")


@stage(space={"a": Int(0, 3)})
def prepare(inputs, a):
    folder = inputs
    note(folder, stage="prepare", a=a, event="start")
    time.sleep(0.6)
    note(folder, stage="prepare", a=a, event="end")
    return {"folder": folder, "a": a}


@stage(space={"b": Float(0.0, 1.0)})
def train(data, b):
    note(data["folder"], stage="train", a=data["a"], b=b, event="start")
    time.sleep(0.3)
    note(data["folder"], stage="train", a=data["a"], b=b, event="end")
    return {"objective": data["a"] + b}


def pipeline(folder: Path) -> Pipeline:
    return Pipeline([prepare, train], inputs=str(folder))


def config(a: int, b: float) -> dict:
    return {"prepare": {"a": a}, "train": {"b": b}}


def drain(runner: RayRunner) -> dict[int, object]:
    done = {}
    while runner.running():
        done.update({r.trial_id: r for r in runner.wait()})
    return done


def test_two_running_trials_that_share_a_prefix_compute_it_once(ray_session, log_dir):
    runner = RayRunner(pipeline(log_dir), StageCache("cache"))
    runner.submit(0, config(1, 0.1))
    runner.submit(1, config(1, 0.2))
    done = drain(runner)
    starts = [e for e in events(log_dir) if e["event"] == "start"]
    assert sum(e["stage"] == "prepare" for e in starts) == 1
    assert sum(e["stage"] == "train" for e in starts) == 2
    assert all(os.getpid() != e["pid"] for e in starts)  # in Ray workers, not the driver
    first, second = done[0], done[1]
    assert first.objective == pytest.approx(1.1) and second.objective == pytest.approx(1.2)
    assert [(s.hit, s.shared) for s in first.stages] == [(False, False), (False, False)]
    assert [(s.hit, s.shared) for s in second.stages] == [(True, True), (False, False)]
    # the waiting trial is charged nothing for the shared stage but keeps its true cost
    assert second.stages[0].charged == 0.0
    assert second.stages[0].compute_seconds == first.stages[0].compute_seconds >= 0.6


def test_cached_prefixes_are_loaded_in_the_task_and_full_hits_only_load(ray_session, log_dir):
    cache = StageCache("cache")
    runner = RayRunner(pipeline(log_dir), cache)
    runner.submit(0, config(2, 0.5))
    drain(runner)
    runner.submit(1, config(2, 0.7))  # prepare cached
    runner.submit(2, config(2, 0.5))  # everything cached
    done = drain(runner)
    assert [(s.hit, s.loaded) for s in done[1].stages] == [(True, True), (False, False)]
    assert [(s.hit, s.loaded) for s in done[2].stages] == [(True, False), (True, True)]
    assert done[2].objective == pytest.approx(2.5)
    assert sum(e["event"] == "start" and e["stage"] == "prepare" for e in events(log_dir)) == 1


class Bulky:
    """A large stage output that notes every process that unpickles it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.payload = b"x" * 2_000_000

    def __reduce__(self):
        return (_rebuild_bulky, (self.folder, self.payload))


def _rebuild_bulky(folder, payload):
    note(folder, event="unpickled")
    bulky = Bulky.__new__(Bulky)
    bulky.folder, bulky.payload = folder, payload
    return bulky


@stage(space={"n": Int(1, 3)})
def make_bulky(folder, n):
    return Bulky(folder)


@stage
def measure(bulky):
    return {"objective": float(len(bulky.payload))}


def test_large_outputs_travel_between_tasks_never_through_the_driver(ray_session, log_dir):
    runner = RayRunner(Pipeline([make_bulky, measure], inputs=str(log_dir)), StageCache("cache"))
    runner.submit(0, {"make_bulky": {"n": 1}})
    runner.submit(1, {"make_bulky": {"n": 2}})
    done = drain(runner)
    assert all(r.completed and r.objective == 2_000_000 for r in done.values())
    unpickled = [e["pid"] for e in events(log_dir) if e["event"] == "unpickled"]
    assert unpickled and os.getpid() not in unpickled


@stage(space={"x": Float(0.0, 1.0)})
def dies_once(marker, x):
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)  # the worker process dies: not an exception in user code
    return {"objective": x}


def test_a_dying_worker_has_its_stage_retried(ray_session, tmp_path):
    marker = tmp_path / "died"
    result = tune(
        Pipeline([dies_once], inputs=str(marker)),
        tuner="random",
        trials=3,
        study="dies",
        runner="ray",
        progress=False,
        tracking=False,
    )
    assert marker.exists() and int(marker.read_text()) != os.getpid()
    assert len(result.trials) == 3 and all(r.completed for r in result.trials)


def test_out_of_retries_the_trial_fails_clearly_and_the_study_goes_on(ray_session, tmp_path):
    marker = tmp_path / "died"
    result = tune(
        Pipeline([dies_once], inputs=str(marker)),
        tuner="random",
        trials=3,
        study="dies",
        runner="ray",
        retries=0,
        progress=False,
        tracking=False,
    )
    first, *rest = result.trials
    assert not first.completed
    assert first.error.startswith("stage 'dies_once' failed: WorkerCrashedError")
    assert len(rest) == 2 and all(r.completed for r in rest)


@stage(space={"x": Float(0.0, 1.0)})
def raises(folder, x):
    note(folder, event="raises")
    raise ValueError(f"bad x={x:.2f}")


def test_an_exception_in_a_stage_fails_the_trial_without_retrying(ray_session, log_dir):
    runner = RayRunner(Pipeline([raises], inputs=str(log_dir)), StageCache("cache"))
    runner.submit(7, {"raises": {"x": 0.5}})
    record = drain(runner)[7]
    assert record.status == "failed"
    assert record.error == "stage 'raises' failed: ValueError: bad x=0.50"
    assert "Traceback" in record.traceback and record.stages[0].cost > 0
    assert len([e for e in events(log_dir) if e["event"] == "raises"]) == 1


def test_parallel_trials_overlap_and_the_tuner_proposes_while_others_run(ray_session, log_dir):
    result = tune(
        pipeline(log_dir),
        tuner="random",
        trials=6,
        workers=2,
        study="parallel",
        runner="ray",
        progress=False,
        tracking=False,
    )
    assert len(result.trials) == 6 and all(r.completed for r in result.trials)
    spans = sorted((r.started, r.finished) for r in result.trials)
    pairs = zip(spans, spans[1:], strict=False)
    overlapping = sum(a_end > b_start for (_, a_end), (b_start, _) in pairs)
    assert overlapping >= 2  # trials ran side by side, not one after another


PIPELINE_FILE = """
from dataclasses import dataclass
from memotune import Float, Int, Pipeline, stage

@dataclass
class Features:  # a stage output whose class lives in the pipeline file
    size: int

def double(size):  # a helper the stage calls
    return 2 * size

@stage(space={"size": Int(1, 9)})
def featurize(inputs, size):
    return Features(double(size))

@stage(space={"scale": Float(0.0, 1.0)})
def score(features, scale):
    return {"objective": features.size * scale}

pipeline = Pipeline([featurize, score])
"""


def test_outputs_of_classes_from_the_pipeline_file_are_cached_and_reused(ray_session, tmp_path):
    """The CLI imports FILE.py under a name no worker can import: the runner sends the
    file, so the output pickles into the cache and loads in any worker or process."""
    from memotune.loading import load_pipeline
    from memotune.pipelines import run

    (tmp_path / "features_pipeline.py").write_text(PIPELINE_FILE)
    pipe = load_pipeline(str(tmp_path / "features_pipeline.py"))
    cache = StageCache("cache")
    runner = RayRunner(pipe, cache)
    runner.submit(0, {"featurize": {"size": 3}, "score": {"scale": 0.5}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "could not be cached" would be a warning
        first = drain(runner)[0]
        runner.submit(1, {"featurize": {"size": 3}, "score": {"scale": 1.0}})
        second = drain(runner)[1]
    assert first.objective == 3.0 and second.objective == 6.0
    assert [s.hit for s in second.stages] == [True, False]  # loaded in a worker
    local = run(pipe, {"featurize": {"size": 3}, "score": {"scale": 0.25}}, cache=cache)
    assert local.stages[0].hit and local.objective == 1.5  # and in this process


def test_stages_are_cancelled_on_close_only_where_ray_outlives_the_sweep(ray_session, log_dir):
    """A Ray the sweep started stops its tasks when the sweep disconnects; cancelling them
    as well only races Ray's completion callback, which can abort the driver."""
    with open_runner("ray", pipeline(log_dir), StageCache("cache")) as runner:
        assert runner.cancel_on_close  # the session's Ray outlives this sweep
    script = (
        "from memotune import Float, Pipeline, StageCache, stage\n"
        "from memotune.runners import open_runner\n"
        "square = stage(space={'x': Float(0, 1)})(lambda inputs, x: {'objective': x * x})\n"
        "with open_runner('ray', Pipeline([square]), StageCache('cache')) as runner:\n"
        "    print('cancels:', runner.cancel_on_close)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "cancels: False" in ran.stdout
