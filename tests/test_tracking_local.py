"""Tracking on by default, into MLflow's own default store: ``sqlite:///mlflow.db`` here."""

from mlflow import MlflowClient

from memotune import Float, Int, Pipeline, stage, tune


@stage(space={"size": Int(1, 2)})
def prepare(inputs, size):
    return size


@stage(space={"lr": Float(0.0, 1.0)})
def train(size, lr, context):
    context.report(0, loss=1.0 - lr)
    context.report(1, loss=0.5 * (1.0 - lr))
    return {"score": size * lr}


PIPE = Pipeline([prepare, train], objective="score", name="local")


def sweep(trials, **options):
    return tune(
        PIPE, tuner="random", trials=trials, study="here", runner="local", progress=False, **options
    )


def test_a_sweep_is_tracked_by_default_in_mlflow_db_and_resumes_into_the_same_run(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sweep(3)
    assert (tmp_path / "mlflow.db").is_file()
    client = MlflowClient("sqlite:///mlflow.db")
    experiment = client.get_experiment_by_name("here")
    sweep(5)  # resumed: two more trials
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 6
    children = [r for r in runs if r is not parents[0]]
    assert sorted(r.data.tags["memotune.trial"] for r in children) == ["0", "1", "2", "3", "4"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    history = client.get_metric_history(children[0].info.run_id, "train.loss")
    assert sorted(m.step for m in history) == [0, 1]


def test_no_tracking_writes_no_store_and_the_environment_picks_the_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sweep(2, tracking=False)
    assert not (tmp_path / "mlflow.db").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    sweep(3)
    assert not (tmp_path / "mlflow.db").exists()
    client = MlflowClient(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    runs = client.search_runs([client.get_experiment_by_name("here").experiment_id])
    trials = sorted(r.data.tags.get("memotune.trial", "parent") for r in runs)
    assert trials == ["0", "1", "2", "parent"]  # the untracked trials were logged from the journal
