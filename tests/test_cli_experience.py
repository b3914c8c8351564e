"""What a user sees around a sweep: failures where they look, signals, errors before
Ray starts, and cache commands that behave like Unix tools (all through the CLI)."""

import fcntl
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient

from memotune import Float, Int, Pipeline, run, stage, tune
from memotune.progress import ProgressPrinter

FLAKY = """
import time
from memotune import Float, Pipeline, Stage


def prepare(upstream, scale):
    return scale


def check(value):
    if value > 0.6:
        raise ValueError(f"scale {value:.3f} is too large")


def train(upstream, lr, pause):
    time.sleep(pause)
    check(upstream)
    return upstream * lr


def evaluate(upstream, shift):
    return {"loss": (upstream - 0.2) ** 2 + shift}


pipeline = Pipeline(
    [
        Stage(prepare, space={"scale": Float(0.0, 1.0)}),
        Stage(train, space={"lr": Float(0.1, 1.0), "pause": Float(0.0, PAUSE)}),
        Stage(evaluate, space={"shift": Float(0.0, 0.1)}),
    ],
    objective="loss",
    direction="minimize",
    name="flaky",
)
"""


def write_flaky(folder: Path, pause: float = 0.01) -> str:
    (folder / "flaky.py").write_text(FLAKY.replace("PAUSE", repr(pause)))
    return "flaky.py"


def memotune(*args, cwd, timeout=600, **options):
    return subprocess.run(
        [sys.executable, "-m", "memotune", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **options,
    )


def test_a_failing_stage_is_one_line_per_trial_and_show_has_the_users_traceback(tmp_path):
    write_flaky(tmp_path)
    out = memotune(
        "tune", "flaky.py", "--trials", "12", "--tuner", "random", "--study", "flaky",
        "--max-failures", "100", "--no-tracking", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    failed = [line for line in out.stderr.splitlines() if " failed in stage " in line]
    assert failed, out.stderr
    for line in failed:
        assert "in stage 'train': ValueError: scale" in line
        assert "(memotune show flaky --trial " in line
    assert "Unhandled error" not in out.stderr and "ray_runner.py" not in out.stderr
    assert "Token authentication" not in out.stderr  # Ray's notice on every embedded start

    shown = memotune("show", "flaky", "--json", cwd=tmp_path)
    failures = json.loads(shown.stdout)["failures"]
    assert len(failures) == len(failed)
    assert all(f["stage"] == "train" and f["error"].startswith("ValueError") for f in failures)
    table = memotune("show", "flaky", cwd=tmp_path).stdout
    assert "failed trials" in table and f"{failures[0]['trial']}   train   ValueError" in table

    whole = memotune("show", "flaky", "--trial", str(failures[0]["trial"]), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    trace = whole.stdout[whole.stdout.index("Traceback") :]
    frames = [line for line in trace.splitlines() if line.strip().startswith("File ")]
    assert frames and all("flaky.py" in frame for frame in frames), trace  # the user's only
    assert '"scale"' in whole.stdout and "error" in whole.stdout  # config, stage outcomes
    assert os.uname().nodename in whole.stdout  # where each stage ran, readably
    missing = memotune("show", "flaky", "--trial", "999", cwd=tmp_path)
    assert missing.returncode == 2 and "trial 999 of study 'flaky' does not exist" in missing.stderr


def test_sigterm_ends_a_sweep_like_ctrl_c(tmp_path):
    write_flaky(tmp_path, pause=1.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "memotune", "tune", "flaky.py", "--trials", "200", "--tuner",
         "random", "--study", "stopped", "--max-failures", "500", "--tracking-uri", uri],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    journal = tmp_path / ".memotune" / "studies" / "stopped" / "journal.sqlite"
    deadline = time.monotonic() + 300
    while not _finished_trials(journal) and time.monotonic() < deadline:
        time.sleep(0.5)
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, err
    assert "memotune: terminated" in err and "done (interrupted)" in err
    assert "SIGTERM received" not in err and "Traceback" not in err
    shown = json.loads(memotune("show", "stopped", "--json", cwd=tmp_path).stdout)
    assert shown["trials"] >= 1  # finished trials are journaled
    client = MlflowClient(tracking_uri=uri)  # never mlflow.set_tracking_uri: it is global
    experiment = client.get_experiment_by_name("stopped").experiment_id
    parent = client.search_runs([experiment], "tags.`memotune.role` = 'study'")
    assert [run.info.status for run in parent] == ["KILLED"]


def _finished_trials(journal: Path) -> int:
    import sqlite3

    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(journal) as db:
            return db.execute("SELECT COUNT(*) FROM trials WHERE record IS NOT NULL").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0


def test_errors_in_the_arguments_or_the_journal_come_before_ray_starts(tmp_path):
    write_flaky(tmp_path)
    first = memotune(
        "tune", "flaky.py", "--trials", "2", "--study", "s", "--runner", "local",
        "--no-tracking", cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    (tmp_path / "flaky.py").write_text(
        FLAKY.replace("PAUSE", "0.01").replace('"lr": Float(0.1, 1.0)', '"lr": Float(0.1, 2.0)')
    )
    cases = [
        (["--workers", "0"], "workers must be at least 1, got 0"),
        (["--study", "s"], "stage 'train' parameter 'lr' changed from Float(low=0.1, high=1.0"),
    ]
    for extra, message in cases:
        started = time.monotonic()
        out = memotune("tune", "flaky.py", "--trials", "3", "--no-tracking", *extra, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert "Ray" not in out.stderr and time.monotonic() - started < 30
    lock = tmp_path / ".memotune" / "studies" / "s" / "lock"
    with lock.open("a+") as held:  # another sweep runs study 's'
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = memotune("tune", "flaky.py", "--trials", "3", "--study", "s", cwd=tmp_path)
    assert locked.returncode == 2 and "is being run by another process" in locked.stderr
    assert "Ray" not in locked.stderr
    zero = memotune("tune", "flaky.py", "--trials", "0", "--no-tracking", cwd=tmp_path)
    assert zero.returncode == 2 and "trials must be at least 1, got 0" in zero.stderr


@stage(space={"n": Int(1, 100)})
def make(inputs, n):
    return bytes(n * 1000)


@stage(space={"f": Float(0.0, 1.0)})
def size(blob, f):
    return float(len(blob)) * f


def test_cache_commands_behave_like_unix_tools(tmp_path):
    pipe = Pipeline([make, size])
    for n in range(1, 60):
        run(pipe, {"make": {"n": n}, "size": {"f": 0.5}}, cache="c")
    for f in (0.1, 0.2):  # two hits on make's entry, one stage each
        run(pipe, {"make": {"n": 3}, "size": {"f": f}}, cache="c")
    run(pipe, {"make": {"n": 3}, "size": {"f": 0.2}}, cache="c")  # size's entry: both stages

    piped = subprocess.run(
        f"{sys.executable} -m memotune cache ls --cache c --limit 1000 | head -1",
        shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert piped.stdout.strip() and piped.stderr == "", piped.stderr

    nosuch = memotune("cache", "unpin", "--cache", "c", "--study", "nosuch", cwd=tmp_path)
    assert nosuch.returncode == 2 and "study 'nosuch' holds no pins" in nosuch.stderr
    stage_name = memotune("cache", "ls", "--cache", "c", "--stage", "nope", cwd=tmp_path)
    assert stage_name.returncode == 2 and "stages there: make, size" in stage_name.stderr

    stats = json.loads(memotune("cache", "stats", "--cache", "c", "--json", cwd=tmp_path).stdout)
    assert stats["by_stage"]["make"]["hits"] == 3 and stats["by_stage"]["size"]["hits"] == 1
    assert stats["hits"] == 4

    refused = memotune("cache", "clear", "--cache", "c", cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert (
        json.loads(memotune("cache", "stats", "--cache", "c", "--json", cwd=tmp_path).stdout)[
            "entries"
        ]
        == stats["entries"]
    )
    cleared = memotune("cache", "clear", "--cache", "c", "--yes", cwd=tmp_path)
    assert cleared.returncode == 0 and f"removed {stats['entries']} entries" in cleared.stdout


def test_cache_hits_agree_with_show(tmp_path):
    write_flaky(tmp_path)
    out = memotune(
        "tune", "flaky.py", "--trials", "15", "--tuner", "eeipu", "--study", "h",
        "--runner", "local", "--no-tracking", "--cache", "c", "--max-failures", "100",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    shown = json.loads(memotune("show", "h", "--json", cwd=tmp_path).stdout)
    stats = json.loads(memotune("cache", "stats", "--cache", "c", "--json", cwd=tmp_path).stdout)
    by_stage = {
        row["stage"]: row["hits"] for row in shown["stages"] if row["stage"] in stats["by_stage"]
    }
    assert sum(by_stage.values()) > 0, shown["stages"]
    assert by_stage == {name: row["hits"] for name, row in stats["by_stage"].items()}


def test_ui_in_an_empty_folder_says_so_and_creates_nothing(tmp_path):
    out = memotune("ui", cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    assert out.returncode == 2 and "no MLflow store at" in out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_progress_shows_a_live_bar_with_trials_best_hits_and_time_left(tmp_path):
    stream = io.StringIO()
    tune(
        Pipeline([make, size]),
        tuner="random",
        trials=6,
        study="live",
        runner="local",
        tracking=False,
        progress=False,
        callbacks=[ProgressPrinter(stream, live=True)],
    )
    shown = stream.getvalue()
    assert "budget" in shown and "━" in shown  # rich's bar
    assert "running 0 | finished 6 | failed 0 | best" in shown
    assert "cache hits" in shown and re.search(r"\d:\d\d:\d\d|-:--:--", shown)  # time left


def test_plot_writes_the_studys_figures(tmp_path):
    tune(Pipeline([make, size]), tuner="random", trials=6, study="p", runner="local",
         tracking=False, progress=False)  # fmt: skip
    out = memotune("plot", "p", "--out", "figures", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "figures/plots.html" in out.stdout
    for name in ("parallel_coordinates", "parameter_importance", "objective_by_trial",
                 "stage_cost_by_trial", "convergence", "cost_breakdown"):  # fmt: skip
        assert (tmp_path / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "figures" / "plots.html").read_text()
    assert page.count("Plotly.newPlot") == 4 and "parcoords" in page
    empty = memotune("plot", "nosuch", cwd=tmp_path)
    assert empty.returncode == 2 and "no study 'nosuch'" in empty.stderr


def test_an_address_where_no_cluster_answers_fails_in_one_line(tmp_path):
    write_flaky(tmp_path)
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = f"127.0.0.1:{port}"
    for extra, env in (
        (["--address", dead], {}),
        (["--address", "auto"], {"RAY_ADDRESS": dead}),  # what "auto" finds is dead
    ):
        started = time.monotonic()
        out = memotune(
            "tune", "flaky.py", "--trials", "2", "--no-tracking", "--connect-timeout", "5",
            *extra, cwd=tmp_path, env={**os.environ, **env},
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert f"no Ray cluster answers at '{extra[1]}'" in out.stderr
        assert f":{port}" in out.stderr and "Connection refused" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert time.monotonic() - started < 60


ONE_STAGE = """
from memotune import Float, Pipeline, stage


@stage(space={"x": Float(0.0, 1.0)})
def square(inputs, x):
    return {"loss": (x - 0.3) ** 2}


pipeline = Pipeline([square], objective="loss", direction="minimize", name="one")
"""


@contextmanager
def ray_head(env: dict[str, str]) -> Iterator[str]:
    """A one-node `ray start --head` cluster on loopback, with its own port and temp
    folder; only its own processes are stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="mt-ray-", dir="/tmp")  # short: Ray's socket paths
    head = subprocess.Popen(
        [Path(sys.executable).with_name("ray"), "start", "--head", "--block",
         "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _listens(port):
            assert head.poll() is None and time.monotonic() < deadline, "no Ray head came up"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def _listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_cluster_that_requires_a_token_says_so_and_lets_the_token_in(tmp_path):
    (tmp_path / "one.py").write_text(ONE_STAGE)
    home = tmp_path / "home"  # no ~/.ray/auth_token here, none of the user's RAY_ settings
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(home)}
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    with ray_head(env | token) as address:
        tune = ["tune", "one.py", "--trials", "1", "--no-tracking", "--address", address]
        for settings, fix in (
            ({}, "set RAY_AUTH_MODE=token and give this process the cluster's token"),
            (token | {"RAY_AUTH_TOKEN": "another"}, "refused this process: give this process"),
        ):
            out = memotune(*tune, cwd=tmp_path, env=env | settings)
            assert out.returncode == 2, out.stderr
            error = f"memotune: error: the Ray cluster at '{address}' requires token authentication"
            assert error in out.stderr and fix in out.stderr and "RAY_AUTH_TOKEN" in out.stderr
            assert out.stderr.count("InvalidAuthToken") <= 1, out.stderr  # Ray retried 20 times
        joined = memotune(*tune, cwd=tmp_path, env=env | token)
        assert joined.returncode == 0, joined.stderr
        assert "best loss = " in joined.stdout
