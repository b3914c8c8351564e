"""What runs hold and how logging survives an unreachable store, without a server:
the run contents, the study report, and the outbox with a target that goes away."""

import csv
import io
import logging
import threading
import time

from memotune.pipelines import StageRecord, TrialRecord
from memotune.report import convergence, cost_table, stage_costs, to_csv, trials_table
from memotune.tracking.outbox import GiveUp, Job, Outbox
from memotune.tracking.runs import budget_step, metric_key, trial_metrics, trial_params, trial_tags
from memotune.tracking.store import resolve_uri


def record(trial_id, objective, *, hits=(False, False), status="completed", history=()):
    stages = [
        StageRecord(
            "prepare",
            f"k{trial_id}a",
            hit=hits[0],
            cost=2.0,
            charged=0.1 if hits[0] else 2.0,
            compute_seconds=2.0,
            load_seconds=0.1 if hits[0] else 0.0,
        ),
        StageRecord(
            "train",
            f"k{trial_id}b",
            hit=hits[1],
            cost=5.0,
            charged=0.2 if hits[1] else 5.0,
            compute_seconds=5.0,
            metrics={"train_loss": 0.5},
            history=list(history),
        ),
    ]
    return TrialRecord(
        config={"prepare": {"n": trial_id}, "train": {"lr": 0.1 * (trial_id + 1)}},
        status=status,
        objective=objective,
        metrics={} if objective is None else {"acc": objective, "loss": 1 - objective},
        stages=stages,
        error=None if status == "completed" else "stage 'train' failed: ValueError: nan",
        trial_id=trial_id,
        started=100.0 + trial_id,
        finished=100.5 + trial_id,
        info={"phase": "bo", "acquisition": -1.25, "eta": 0.5, "tuner_seconds": 0.03},
    )


def test_a_trial_run_holds_params_metrics_history_and_tags():
    history = [{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.7, "acc": 0.6}]
    done = record(3, 0.8, hits=(True, False), history=history)
    assert trial_params(done.config) == {"prepare.n": "3", "train.lr": "0.4"}
    metrics = {(m.key, m.step): m.value for m in trial_metrics(done, trial_cost=5.13)}
    assert metrics[("acc", 0)] == 0.8 and metrics[("loss", 0)] == 0.19999999999999996
    assert metrics[("acquisition", 0)] == -1.25 and metrics[("eta", 0)] == 0.5
    assert metrics[("tuner_seconds", 0)] == 0.03 and metrics[("cache_hits", 0)] == 1
    assert metrics[("trial_cost", 0)] == 5.13
    assert metrics[("prepare.hit", 0)] == 1 and metrics[("prepare.load_seconds", 0)] == 0.1
    assert metrics[("train.compute_seconds", 0)] == 5.0 and metrics[("train.train_loss", 0)] == 0.5
    # stepped metrics from StageContext.report / Output(history=...), at their steps
    assert [(s, metrics[("train.loss", s)]) for s in (1, 2)] == [(1, 0.9), (2, 0.7)]
    assert metrics[("train.acc", 2)] == 0.6
    tags = trial_tags(done, "eeipu")
    assert tags["status"] == "completed" and tags["tuner"] == "eeipu" and tags["phase"] == "bo"
    assert tags["reused_prefix"] == "1" and tags["memotune.trial"] == "3" and "error" not in tags
    failed = trial_tags(record(4, None, status="failed"), "ei")
    assert failed["status"] == "failed" and failed["error"].startswith("stage 'train' failed")


def test_keys_mlflow_rejects_are_made_safe_and_steps_map_the_budget():
    assert metric_key("val acc@top-1 (%)") == "val acc_top-1 ___"
    assert budget_step(12.3456, "cost") == 12346  # thousandths of the budget's unit
    assert budget_step(7.0, "trials") == 7


def test_the_report_adds_up_convergence_costs_and_the_trials_table():
    records = [
        record(0, 0.5),
        record(1, None, status="failed"),
        record(2, 0.7, hits=(True, False)),
        record(3, 0.6, hits=(True, True)),
    ]
    spent = [7.0, 14.0, 19.1, 19.4]
    points = convergence(records, spent, maximize=True)
    assert [p.best for p in points] == [0.5, 0.5, 0.7, 0.7]
    assert [round(p.cost, 6) for p in points] == [7.0, 7.0, 5.1, 0.3]
    costs = {c.stage: c for c in stage_costs(records)}
    assert (costs["prepare"].runs, costs["prepare"].hits) == (2, 2)
    assert round(costs["prepare"].saved, 6) == 3.8 and round(costs["train"].saved, 6) == 4.8
    headers, rows = cost_table(records, {"kind": "cost", "tuner": 0.12})
    total = dict(zip(headers, rows[-1], strict=True))
    assert rows[-2][0] == "(tuner)" and total["stage"] == "total"
    assert round(total["charged"], 6) == round(2 + 2 + 0.1 + 0.1 + 5 + 5 + 5 + 0.2 + 0.12, 6)
    table = list(csv.DictReader(io.StringIO(to_csv(*trials_table(records, points)))))
    assert [row["trial"] for row in table] == ["0", "1", "2", "3"]
    assert table[1]["status"] == "failed" and table[1]["error"].startswith("stage 'train'")
    assert table[3]["reused_prefix"] == "2" and table[3]["train.hit"] == "1"
    assert table[2]["train.lr"] == "0.30000000000000004" and table[2]["acc"] == "0.7"


def test_the_default_store_is_mlflow_db_here_unless_the_environment_names_one(
    monkeypatch, tmp_path
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_uri(None) == "http://tracking:5000"
    assert resolve_uri("sqlite:///other.db") == "sqlite:///other.db"


class FlakyTarget:
    """A store that can be switched off; jobs fail while it is off."""

    def __init__(self):
        self.up = threading.Event()
        self.done: list[str] = []

    def job(self, label, key=None):
        def run():
            if not self.up.is_set():
                raise ConnectionError("connection refused")
            self.done.append(label)

        return Job(label, run, key=key)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_unreachable_target_warns_once_keeps_the_queue_and_logs_it_when_back(caplog):
    caplog.set_level(logging.WARNING, logger="memotune.tracking")
    target = FlakyTarget()
    outbox = Outbox("fake store", target.up.is_set, max_pause=0.2)
    for i in range(5):
        outbox.put(target.job(f"trial {i}"))
    wait_for(lambda: outbox.offline)
    started = time.monotonic()
    assert outbox.flush(timeout=30) == [f"trial {i}" for i in range(5)]
    assert time.monotonic() - started < 5  # gives up once the target was found down
    outbox.put(target.job("trial 5"))
    time.sleep(0.5)  # several retries while down
    target.up.set()
    assert outbox.flush(timeout=30) == []
    assert target.done == [f"trial {i}" for i in range(6)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("does not answer" in m for m in messages) == 1
    assert sum("is back; logging the 6 item(s)" in m for m in messages) == 1
    outbox.close()


def test_a_job_that_keeps_failing_while_the_target_is_up_is_dropped_not_blocking(caplog):
    caplog.set_level(logging.WARNING, logger="memotune.tracking")
    target = FlakyTarget()
    target.up.set()

    def broken():
        raise ValueError("bad metric")

    outbox = Outbox("fake store", target.up.is_set, max_failures=3, max_pause=0.05)
    outbox.put(Job("trial 0", broken))
    outbox.put(target.job("trial 1"))
    assert outbox.flush(timeout=30) == []
    assert target.done == ["trial 1"] and outbox.dropped == ["trial 0"]
    assert any("could not log trial 0" in r.getMessage() for r in caplog.records)
    outbox.close()


def test_a_newer_job_with_the_same_key_replaces_the_queued_one_and_give_up_drops_all():
    target = FlakyTarget()
    outbox = Outbox("fake store", target.up.is_set, max_pause=0.05)
    outbox.put(target.job("trial 0"))
    for n in range(3):
        outbox.put(target.job(f"summary {n}", key="summary"))
    assert outbox.pending() == ["trial 0", "summary 2"]
    target.up.set()
    assert outbox.flush(timeout=30) == [] and target.done == ["trial 0", "summary 2"]

    def give_up():
        raise GiveUp("experiment deleted")

    outbox.put(Job("the study's run", give_up))
    outbox.put(target.job("trial 1"))
    wait_for(lambda: not outbox.pending())
    assert outbox.dropped == ["the study's run", "trial 1"] and "trial 1" not in target.done


def test_the_end_of_a_study_does_not_wait_for_a_hung_server():
    release = threading.Event()
    target = FlakyTarget()  # down: a request to it hangs until released (a stopped server)
    outbox = Outbox("fake store", target.up.is_set)
    outbox.put(Job("trial 0", lambda: release.wait(60)))
    outbox.put(target.job("trial 1"))
    started = time.monotonic()
    assert outbox.flush(timeout=60, stuck_after=0.5) == ["trial 0", "trial 1"]
    assert time.monotonic() - started < 5 and outbox.offline
    release.set()
    outbox.close()
