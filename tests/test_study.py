import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from memotune import Float, Int, Pipeline, stage, tune
from memotune.stages.synthetic import synthetic_pipeline
from memotune.tuner.registry import TUNERS
from memotune.tuner.study import StudyError, TooManyFailures

KILLABLE = textwrap.dedent(
    """
    import os, sys, time
    from memotune import Float, Int, Pipeline, stage, tune

    LOG = os.environ["CALL_LOG"]

    @stage(space={"a": Int(0, 3)})
    def prepare(inputs, a):
        return a

    @stage(space={"b": Float(0.0, 1.0)}, cache=False)
    def train(x, b, context):
        with open(LOG, "a") as f:
            f.write(f"{context.trial_id}\\n")
        if context.trial_id >= int(os.environ.get("HOLD_FROM", 10**9)):
            time.sleep(3600)  # held mid-stage until the test kills the sweep
        time.sleep(0.1)
        return {"score": -(x - 2) ** 2 - (b - 0.5) ** 2}

    pipeline = Pipeline([prepare, train], objective="score")

    if __name__ == "__main__":
        tune(pipeline, tuner="eeipu", trials=int(sys.argv[1]), study="killed", seed=0,
             progress=False, tracking=False, runner=sys.argv[2], tuner_options={"n_init": 3})
    """
)


def journal_rows(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT id, status, record FROM trials ORDER BY id").fetchall()


def started_trials(log) -> set[int]:
    return {int(line) for line in log.read_text().split()} if log.exists() else set()


@pytest.mark.parametrize("runner", ["local", "ray"])
def test_a_study_killed_mid_trial_resumes_without_losing_or_rerunning_trials(tmp_path, runner):
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    log = tmp_path / "calls.log"
    env = {**os.environ, "CALL_LOG": str(log)}
    journal = tmp_path / ".memotune" / "studies" / "killed" / "journal.sqlite"
    child = subprocess.Popen(
        [sys.executable, str(script), "8", runner],
        env={**env, "HOLD_FROM": "4"},
        cwd=tmp_path,
        start_new_session=True,  # so the kill takes Ray's processes with the driver
    )
    deadline = time.time() + 180
    while 4 not in started_trials(log):  # trials 0-3 are done; trial 4 is held in train
        assert time.time() < deadline and child.poll() is None, "trial 4 never started"
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    before = journal_rows(journal)
    finished_before = {r[0]: json.loads(r[2]) for r in before if r[1] != "running"}
    running_before = [r[0] for r in before if r[1] == "running"]
    assert sorted(finished_before) == [0, 1, 2, 3] and running_before == [4]

    resumed = subprocess.run(
        [sys.executable, str(script), "8", runner],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    after = journal_rows(journal)
    assert [r[0] for r in after] == list(range(8)) and all(r[1] == "completed" for r in after)
    for trial_id, record in finished_before.items():  # restored as they were, not re-run
        assert json.loads(after[trial_id][2]) == record
    calls = [int(line) for line in log.read_text().split()]
    assert sorted(set(calls)) == list(range(8))
    assert [c for c in calls if calls.count(c) > 1] == running_before * 2  # only it ran twice


@stage(space={"x": Float(0.0, 1.0)})
def risky(inputs, x):
    if x > 0.6:
        raise RuntimeError(f"diverged at x={x:.2f}")
    return {"objective": x}


def test_a_raising_stage_is_recorded_and_the_study_goes_on():
    pipe = Pipeline([risky])
    result = tune(
        pipe,
        tuner="ei",
        trials=12,
        seed=0,
        study="risky",
        progress=False,
        tracking=False,
        runner="local",
        tuner_options={"n_init": 4},
    )
    failed = [r for r in result.trials if not r.completed]
    assert len(result.trials) == 12 and failed
    assert all(
        r.error.startswith("stage 'risky' failed: RuntimeError: diverged at") for r in failed
    )
    assert all(r.stages[0].cost > 0 for r in failed)  # measured cost, for the cost models
    assert result.best_value <= 0.6
    bo = [r for r in result.trials[4:] if r.info.get("phase") == "bo"]
    assert sum(r.config["risky"]["x"] > 0.6 for r in bo) < len(bo) / 2  # it learned to avoid it


@stage(space={"x": Float(0.0, 1.0)})
def always_fails(inputs, x):
    raise ValueError("no data")


def test_too_many_consecutive_failures_stop_the_study_clearly():
    with pytest.raises(
        TooManyFailures,
        match="stopped after 3 consecutive failed trials; last "
        "error: stage 'always_fails' failed: ValueError: no data",
    ) as stop:
        tune(
            Pipeline([always_fails]),
            tuner="random",
            trials=10,
            study="doomed",
            max_consecutive_failures=3,
            progress=False,
            tracking=False,
            runner="local",
        )
    assert len(stop.value.result.trials) == 3


@stage(space={"x": Float(0.0, 1.0), "n": Int(1, 4)})
def quick(inputs, x, n):
    return {"objective": x * n}


def test_budgets_are_totals_and_resuming_extends_them():
    pipe = Pipeline([quick])
    first = tune(
        pipe, tuner="random", trials=5, study="grow", progress=False, tracking=False, runner="local"
    )
    assert len(first.trials) == 5 and first.budget["trials"] == 5
    again = tune(
        pipe, tuner="random", trials=5, study="grow", progress=False, tracking=False, runner="local"
    )
    assert len(again.trials) == 5 and again.restored == 5  # nothing more to do
    more = tune(
        pipe, tuner="random", trials=8, study="grow", progress=False, tracking=False, runner="local"
    )
    assert len(more.trials) == 8 and more.restored == 5
    assert [r.config for r in more.trials[:5]] == [r.config for r in first.trials]


def test_a_cost_budget_stops_once_spent_and_charges_the_tuner():
    synthetic = synthetic_pipeline("synthetic-3")
    result = tune(
        synthetic,
        tuner="random",
        budget=60,
        study="units",
        progress=False,
        tracking=False,
        runner="local",
    )
    spent = sum(r.charged for r in result.trials)
    assert spent >= 60 and spent - result.trials[-1].charged < 60
    assert result.budget["tuner"] == 0.0  # cost units: the tuner's seconds are reported apart

    seconds = tune(
        Pipeline([quick]),
        tuner="random",
        budget=0.05,
        study="secs",
        progress=False,
        tracking=False,
        runner="local",
    )
    assert seconds.budget["tuner"] > 0 and seconds.budget["tuner"] == pytest.approx(
        sum(r.info["tuner_seconds"] for r in seconds.trials)
    )


def test_resuming_with_another_space_or_tuner_is_refused():
    tune(
        Pipeline([quick]),
        tuner="random",
        trials=2,
        study="fixed",
        progress=False,
        tracking=False,
        runner="local",
    )
    with pytest.raises(StudyError, match="it was run with tuner 'random', not 'ei'"):
        tune(
            Pipeline([quick]),
            tuner="ei",
            trials=3,
            study="fixed",
            progress=False,
            tracking=False,
            runner="local",
        )
    with pytest.raises(
        StudyError, match="search space changed: stage 'quick' parameter 'n' was removed"
    ):
        tune(
            Pipeline([risky]),
            tuner="random",
            trials=3,
            study="fixed",
            progress=False,
            tracking=False,
            runner="local",
        )


@pytest.mark.parametrize("tuner", sorted(TUNERS))
def test_every_tuner_runs_a_study_on_synthetic_3(tuner):
    result = tune(
        synthetic_pipeline("synthetic-3"),
        tuner=tuner,
        trials=7,
        seed=3,
        study=f"smoke-{tuner}",
        progress=False,
        tracking=False,
        runner="local",
        tuner_options=None if tuner == "random" else {"n_init": 4},
    )
    assert len(result.trials) == 7 and all(r.completed for r in result.trials)
    assert len({json.dumps(r.config, sort_keys=True) for r in result.trials}) == 7
