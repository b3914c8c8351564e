import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def memotune(*args, cwd):
    if args and args[0] == "tune":  # MLflow tracking is tested in test_tracking_*.py
        args = (*args, "--no-tracking")
    return subprocess.run(
        [sys.executable, "-m", "memotune", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_tune_runs_and_resumes_a_study_from_a_file(tmp_path):
    shutil.copy(REPO / "examples" / "digits.py", tmp_path / "digits.py")
    first = memotune(
        "tune",
        "digits.py",
        "--tuner",
        "random",
        "--trials",
        "3",
        "--study",
        "d",
        "--json",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["trials"] == 3 and 0.5 < summary["best_value"] <= 1.0
    assert "trial    2" in first.stderr and "best" in first.stderr  # progress lines
    again = memotune(
        "tune", "digits.py", "--tuner", "random", "--trials", "4", "--study", "d", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert "resuming (3 trials restored)" in again.stderr
    assert "best accuracy =" in again.stdout


def test_user_errors_are_one_clear_line(tmp_path):
    (tmp_path / "two.py").write_text(
        "from memotune import Float, Pipeline, stage\n"
        "@stage(space={'v': Float(0.0, 1.0)})\ndef a(x, v):\n    return v\n"
        "p1 = Pipeline([a])\np2 = Pipeline([a])\n"
    )
    cases = [
        (["tune", "missing.py", "--trials", "2"], "no such file: missing.py"),
        (["tune", "two.py", "--trials", "2"], "defines several pipelines (p1, p2); pick one"),
        (["tune", "two.py:p3", "--trials", "2"], "two.py has no Pipeline named 'p3'"),
        (
            ["bench", "--pipeline", "synthetic-3", "--tuners", "eeipu,nope", "--trials", "3"],
            "unknown tuner 'nope'",
        ),
    ]
    for args, message in cases:
        out = memotune(*args, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    ok = memotune("tune", "two.py:p1", "--trials", "1", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_bench_prints_one_table_and_writes_json_and_a_plot(tmp_path):
    out = memotune(
        "bench",
        "--pipeline",
        "synthetic-3",
        "--tuners",
        "random,ei",
        "--seeds",
        "2",
        "--trials",
        "6",
        "--json",
        "out/bench.json",
        "--plot",
        "out/bench.png",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "synthetic-3, 6 trials, 2 seeds" in out.stdout
    table = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert table["pipeline"] == "synthetic-3" and table["seeds"] == 2
    assert table["failed_runs"] == []
    for tuner in ("random", "ei"):
        row = table["tuners"][tuner]
        assert row["trials_mean"] == 6 and row["best_mean"] is not None
        assert {"best_sem", "tuner_seconds_per_proposal"} <= set(row)
    assert [len(run["curve"]) for run in table["runs"]] == [6, 6, 6, 6]
    assert (tmp_path / "out" / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bench_run_that_breaks_is_reported_and_the_others_go_on(tmp_path):
    (tmp_path / "fixed.py").write_text(  # nothing to tune: random runs it, the GP tuners refuse
        "from memotune import Pipeline, stage\n"
        "@stage\n"
        "def score(inputs):\n"
        "    return {'objective': 1.0}\n"
        "pipeline = Pipeline([score])\n"
    )
    out = memotune(
        "bench",
        "--pipeline",
        "fixed.py",
        "--tuners",
        "random,ei",
        "--seeds",
        "1",
        "--trials",
        "3",
        "--json",
        "bench.json",
        cwd=tmp_path,
    )
    assert out.returncode == 1
    assert "ei seed 0: FAILED: ValueError" in out.stderr and "has no hyperparameters" in out.stderr
    assert "1 of 2 runs failed" in out.stderr
    table = json.loads((tmp_path / "bench.json").read_text())
    assert list(table["tuners"]) == ["random"] and table["tuners"]["random"]["trials_mean"] == 3
    assert [(f["tuner"], f["seed"]) for f in table["failed_runs"]] == [("ei", 0)]
