"""Sweeps logged over HTTP to a real ``mlflow server`` on loopback, checked through
``MlflowClient``; and a server killed in the middle of a sweep.

Each test starts an MLflow server (20-60 s on the 2-core development machine).
"""

import csv
import io
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from memotune import Float, Int, Pipeline, stage, tune
from memotune.tracking.store import HTTP_DEFAULTS, server_is_up
from memotune.tuner.callbacks import StudyCallback

ARTIFACTS = {"convergence.png", "cost_breakdown.png", "cost_breakdown.csv", "trials.csv"}


@stage(space={"size": Int(1, 2)})
def prepare(inputs, size):
    return size


@stage(space={"lr": Float(0.0, 1.0)})
def train(size, lr, context):
    if context.trial_id == 1:
        raise ValueError("diverged")
    for epoch in range(3):
        context.report(epoch, loss=(1.0 - lr) / (epoch + 1))
    time.sleep(0.1)
    return size * lr


@stage
def evaluate(score):
    return {"score": score, "loss": 2.0 - score}


PIPE = Pipeline([prepare, train, evaluate], objective="score", name="tracked")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TrackingServer:
    """``mlflow server`` on loopback with its own SQLite store and artifact folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log = open(self.root / "server.log", "a")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--workers", "1"]
            + ["--backend-store-uri", f"sqlite:///{self.root / 'server.db'}"]
            + ["--artifacts-destination", str(self.root / "artifacts")],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 240
        while not server_is_up(self.uri, timeout=1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(
                    f"mlflow server did not start: {(self.root / 'server.log').read_text()}"
                )
            time.sleep(0.25)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.log.close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "mlflow-server"
    root.mkdir()
    tracking = TrackingServer(root)
    tracking.start()
    yield tracking
    tracking.kill()


@pytest.fixture(autouse=True)
def short_http_timeouts(monkeypatch):
    """What the tracker sets for a study; set here so that it is undone after each test."""
    for name, value in HTTP_DEFAULTS.items():
        monkeypatch.setenv(name, value)


def study_runs(client: MlflowClient, study: str):
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None, f"no experiment named {study}"
    runs = client.search_runs(
        [experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    children = [r for r in runs if r is not parent]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    by_trial = {int(r.data.tags["memotune.trial"]): r for r in children}
    assert len(by_trial) == len(children), "two runs for one trial"
    return parent, by_trial


def test_a_sweep_logs_one_parent_run_and_a_child_per_trial_and_resumes_into_it(server):
    result = tune(
        PIPE,
        tuner="eeipu",
        trials=6,
        seed=0,
        study="tracked-study",
        runner="local",
        progress=False,
        tracking_uri=server.uri,
        tuner_options={"n_init": 3},
    )
    client = MlflowClient(server.uri)
    parent, children = study_runs(client, "tracked-study")
    assert sorted(children) == list(range(6))
    for trial in result.trials:
        run = children[trial.trial_id]
        assert run.data.params == {
            "prepare.size": str(trial.config["prepare"]["size"]),
            "train.lr": repr(trial.config["train"]["lr"]),
        }
        tags, metrics = run.data.tags, run.data.metrics
        assert tags["status"] == trial.status and tags["tuner"] == "eeipu"
        assert tags["reused_prefix"] == str(trial.reused_depth)
        assert tags["mlflow.runName"] == f"trial-{trial.trial_id}"
        for name in ("prepare.compute_seconds", "prepare.load_seconds", "cache_hits"):
            assert name in metrics
        assert metrics["tuner_seconds"] == trial.info["tuner_seconds"]
        assert metrics["cache_hits"] == trial.cache_hits
        if trial.completed:
            assert run.info.status == "FINISHED"
            assert metrics["score"] == trial.objective and metrics["loss"] == 2.0 - trial.objective
            assert metrics["train.compute_seconds"] >= 0.1
            history = client.get_metric_history(run.info.run_id, "train.loss")
            assert sorted((m.step, m.value) for m in history) == [
                (step, (1.0 - trial.config["train"]["lr"]) / (step + 1)) for step in range(3)
            ]
        else:
            assert run.info.status == "FAILED" and trial.trial_id == 1
            assert tags["error"] == trial.error and "diverged" in tags["error"]
            assert "traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert any(r.reused_depth for r in result.trials)  # the prefix was reused at least once
    bo = [children[r.trial_id] for r in result.trials if r.info.get("phase") == "bo"]
    assert len(bo) == 3
    assert all({"acquisition", "eta"} <= set(r.data.metrics) for r in bo)
    assert all(r.data.tags["phase"] == "bo" for r in bo)

    assert parent.info.status == "FINISHED" and parent.info.run_name == "tracked-study"
    params = parent.data.params
    assert (params["tuner"], params["objective"], params["direction"]) == (
        "eeipu",
        "score",
        "maximize",
    )
    assert params["seed"] == "0" and params["budget_kind"] == "trials"
    assert params["space.train.lr"].startswith("Float(")
    assert parent.data.tags["stopped"] == "trials" and parent.data.metrics["trials"] == 6
    best = client.get_metric_history(parent.info.run_id, "best_value")
    assert [m.step for m in sorted(best, key=lambda m: m.step)] == list(range(1, 7))
    assert max(m.value for m in best) == result.best_value
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert ARTIFACTS <= artifacts
    folder = client.download_artifacts(parent.info.run_id, "", dst_path=str(server.root / "dl"))
    table = list(csv.DictReader(io.StringIO(Path(folder, "trials.csv").read_text())))
    assert [int(row["trial"]) for row in table] == [r.trial_id for r in result.trials]
    assert Path(folder, "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    costs = list(csv.DictReader(io.StringIO(Path(folder, "cost_breakdown.csv").read_text())))
    assert [row["stage"] for row in costs][:3] == ["prepare", "train", "evaluate"]

    resumed = tune(
        PIPE,
        tuner="eeipu",
        trials=9,
        seed=0,
        study="tracked-study",
        runner="local",
        progress=False,
        tracking_uri=server.uri,
        tuner_options={"n_init": 3},
    )
    assert len(resumed.trials) == 9
    again, children = study_runs(client, "tracked-study")
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert sorted(children) == list(range(9))
    best = client.get_metric_history(parent.info.run_id, "best_value")
    assert sorted(m.step for m in best) == list(range(1, 10))  # no point twice
    assert again.data.metrics["trials"] == 9

    # the command line, one more trial: MLflow's run links stay out of the JSON on stdout
    (Path.cwd() / "tracked.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_tracking_server import PIPE\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "memotune", "tune", "tracked.py", "--tuner", "eeipu"]
        + ["--trials", "10", "--study", "tracked-study", "--runner", "local"]
        + ["--tracking-uri", server.uri, "--json"],
        env={k: v for k, v in os.environ.items() if k not in HTTP_DEFAULTS},  # memotune's own
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["trials"] == 10
    assert "MLflow: experiment 'tracked-study'" in out.stderr
    assert sorted(study_runs(client, "tracked-study")[1]) == list(range(10))


class KillServerAt(StudyCallback):
    """Kills the tracking server when a given trial ends; notes when each trial ended."""

    def __init__(self, server: TrackingServer, trial: int) -> None:
        self.server, self.trial = server, trial
        self.ended: list[float] = []

    def on_trial_end(self, study, record, budget, best) -> None:
        self.ended.append(time.monotonic())
        if record.trial_id == self.trial:
            self.server.kill()


def test_a_sweep_outlives_its_tracking_server_and_a_resume_logs_what_was_missed(server, caplog):
    caplog.set_level(logging.WARNING, logger="memotune.tracking")
    killer = KillServerAt(server, trial=2)
    result = tune(
        PIPE,
        tuner="random",
        trials=8,
        seed=0,
        study="outage",
        runner="local",
        progress=False,
        tracking_uri=server.uri,
        callbacks=[killer],
    )
    assert not server_is_up(server.uri)
    assert [r.trial_id for r in result.trials] == list(range(8))
    with sqlite3.connect(Path(".memotune/studies/outage/journal.sqlite")) as db:
        rows = db.execute("SELECT id, status FROM trials ORDER BY id").fetchall()
    assert rows == [(i, "failed" if i == 1 else "completed") for i in range(8)]
    # trials after the kill ran at their own pace: tracking never waited for the server
    gaps = [b - a for a, b in zip(killer.ended[2:], killer.ended[3:], strict=False)]
    assert max(gaps) < 5.0, gaps
    messages = [r.getMessage() for r in caplog.records]
    assert sum("does not answer" in m for m in messages) == 1, messages
    assert any("not logged to MLflow" in m and "resume the study" in m for m in messages)

    server.start()  # back, with the same store
    tune(
        PIPE,
        tuner="random",
        trials=8,
        seed=0,
        study="outage",
        runner="local",
        progress=False,
        tracking_uri=server.uri,
    )
    client = MlflowClient(server.uri)
    parent, children = study_runs(client, "outage")
    assert sorted(children) == list(range(8))
    assert all(r.info.status in ("FINISHED", "FAILED") for r in children.values())
    assert [children[i].data.tags["status"] for i in range(8)] == [r.status for r in result.trials]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials"] == 8
    best = client.get_metric_history(parent.info.run_id, "best_value")
    assert sorted(m.step for m in best) == list(range(1, 9))
    assert ARTIFACTS <= {a.path for a in client.list_artifacts(parent.info.run_id)}
