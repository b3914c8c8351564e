"""``memotune ui`` serves the MLflow UI over the store a sweep logged to by default."""

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from memotune import Float, Int, Pipeline, stage, tune
from memotune.cli import main
from memotune.tracking.store import server_is_up


@stage(space={"size": Int(1, 3)})
def prepare(inputs, size):
    return size


@stage(space={"lr": Float(0.0, 1.0)})
def train(size, lr):
    return {"score": size * lr}


PIPE = Pipeline([prepare, train], objective="score", name="browse")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def test_ui_serves_the_sweeps_logged_to_the_default_store(tmp_path):
    result = tune(PIPE, tuner="random", trials=4, study="browse", runner="local", progress=False)
    assert (tmp_path / "mlflow.db").is_file()  # MLflow's default store, in the working directory

    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "memotune", "ui", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(ui.stdout, lines), daemon=True).start()
    try:
        address = f"http://127.0.0.1:{port}"
        line = lines.get(timeout=240)
        assert line.startswith(f"MLflow UI: {address}") and "mlflow.db" in line
        assert (
            lines.get(timeout=10)
            .strip()
            .endswith(f"{address}/#/experiments?workflowType=machine_learning")
        )

        experiment = get_json(
            f"{address}/api/2.0/mlflow/experiments/get-by-name?experiment_name=browse"
        )["experiment"]
        kind = {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.experimentKind"]
        assert kind == "custom_model_development"  # the UI opens it on its runs
        runs = get_json(
            f"{address}/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "max_results": 100},
        )["runs"]
        tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
        parents = [run for run, t in zip(runs, tags, strict=True) if "mlflow.parentRunId" not in t]
        assert len(parents) == 1 and len(runs) == 1 + len(result.trials)
        parent_id = parents[0]["info"]["run_id"]
        assert sorted(t["memotune.trial"] for t in tags if t.get("mlflow.parentRunId")) == [
            "0",
            "1",
            "2",
            "3",
        ]
        assert all(t["mlflow.parentRunId"] == parent_id for t in tags if "memotune.trial" in t)

        listed = get_json(f"{address}/api/2.0/mlflow/artifacts/list?run_id={parent_id}")
        assert {"convergence.png", "trials.csv"} <= {f["path"] for f in listed["files"]}
        url = f"{address}/get-artifact?path=convergence.png&run_uuid={parent_id}"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
        with urllib.request.urlopen(f"{address}/", timeout=30) as response:
            page = response.read().decode()
        assert "<title>MLflow</title>" in page and "static-files" in page

        ui.send_signal(signal.SIGTERM)
        assert ui.wait(60) == 0
        deadline = time.monotonic() + 30
        while server_is_up(address, timeout=0.5):  # the MLflow server went with it
            assert time.monotonic() < deadline, "the MLflow server outlived memotune ui"
            time.sleep(0.2)
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()


def test_ui_user_errors_are_one_line_and_a_server_is_pointed_at(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "x.db").touch()
        assert main(["ui", "--port", str(port), "--tracking-uri", "sqlite:///x.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"memotune: error: cannot serve on 127.0.0.1:{port}")
    assert "pick another with --port" in err and len(err.strip().splitlines()) == 1

    assert main(["ui", "--tracking-uri", "http://mlflow.internal:5000"]) == 0
    assert "its UI is at http://mlflow.internal:5000" in capsys.readouterr().out
