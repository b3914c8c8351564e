"""The MLflow UI after a sweep, in a real headless browser (Debian's chromium, which
``make setup`` installs): the runs table shows every trial with its objective, the
parent run shows the study's summary."""

import os
import re
import shutil
import subprocess
import sys
import time

from memotune import Float, Pipeline, stage, tune
from memotune.tracking.runs import run_page

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@stage(space={"width": Float(1.0, 10.0)})
def shape(inputs, width):
    return width


@stage(space={"rate": Float(0.01, 1.0, log=True)})
def fit(width, rate):
    return {"loss": (width - 4.0) ** 2 / 10 + (rate - 0.1) ** 2}


def render(url: str, screenshot: str | None = None) -> str:
    """The page's DOM once its scripts have run (and a screenshot, if asked)."""
    assert BROWSER, "chromium is missing: `make setup` installs it (apt package chromium)"
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000"]
    command += ["--virtual-time-budget=20000"]
    extra = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    out = subprocess.run(
        [*command, *extra, url], capture_output=True, text=True, timeout=180, check=True
    )
    return out.stdout


def test_a_sweep_is_readable_in_the_mlflow_ui(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = tune(
        Pipeline([shape, fit], objective="loss", direction="minimize", name="browse"),
        tuner="random",
        trials=6,
        study="browse",
        runner="local",
        progress=False,
        tracking_uri=uri,
    )
    port = 5300 + os.getpid() % 500
    ui = subprocess.Popen(
        [sys.executable, "-m", "memotune", "ui", "--tracking-uri", uri, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("study browse:" in x for x in lines):
            lines.append(ui.stdout.readline())
        page = next(x for x in lines if "study browse:" in x).split(": ", 1)[1].strip()
        assert "viewStateShareKey=memotune" in page and "workflowType=machine_learning" in page

        runs = render(page)
        trials = set(re.findall(r"trial-\d+", runs))
        assert trials == {f"trial-{i}" for i in range(6)}  # every trial, not folded away
        assert ">loss<" in runs  # the objective is a column
        assert f"{result.best_value:.4g}"[:5] in runs
        assert "memotune study" in runs  # the experiment's description

        experiment = page.split("/experiments/")[1].split("/")[0]
        parent = render(run_page(page.split("/#")[0], experiment, _parent(uri)))
        assert f"Best loss: {result.best_value:.6g}" in parent
        assert "6 trials" in parent and "Budget by stage" in parent
        plots = {"plots.html", "parallel_coordinates.png", "parameter_importance.png"}
        plots |= {"objective_by_trial.png", "stage_cost_by_trial.png", "convergence.png"}
        assert plots <= _artifacts(uri)
    finally:
        ui.terminate()
        ui.wait(60)


def _artifacts(uri: str) -> set[str]:
    from mlflow import MlflowClient

    return {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(_parent(uri))}


def _parent(uri: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("browse")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`memotune.role` = 'study'"
    )
    return runs[0].info.run_id
