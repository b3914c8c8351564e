import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def test_tune_prunes_the_fidelity_example_resumes_it_and_show_counts_the_pruned(tmp_path):
    shutil.copy(REPO / "examples" / "fidelity.py", tmp_path / "fidelity.py")
    prune = ("--prune", "valid_loss", "--prune-min-evidence", "0")  # ASHA's own rule
    args = ("fidelity.py", "--runner", "local", "--study", "f", *prune)
    first = memotune("tune", *args, "--trials", "8", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["pruned"] >= 1 and summary["failed"] == 0
    assert "pruned after step" in first.stderr  # the progress line of a pruned trial
    again = memotune("tune", *args, "--trials", "10", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["trials"] == 10
    shown = memotune("show", "f", cwd=tmp_path)
    assert "pruned)" in shown.stdout


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
        (
            ["bench", "--pipeline", "synthetic-3", "--tuners", "ei", "--reference", "random"]
            + ["--trials", "3"],
            "--reference 'random' is not one of --tuners",
        ),
        (["tune", "two.py:p1", "--tuner", "nothere.py:T", "--trials", "2"], "no such file"),
    ]
    for args, message in cases:
        out = memotune(*args, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    ok = memotune("tune", "two.py:p1", "--trials", "1", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


USER_TUNER = """
from memotune.tuner.random_search import RandomSearch

class Shifted(RandomSearch):
    def _propose(self, pending, budget):
        return super()._propose(pending + [None] * 3, budget)
"""


def test_bench_prints_one_table_and_writes_json_and_a_plot(tmp_path):
    from memotune.bench import anytime_curves

    (tmp_path / "mine.py").write_text(USER_TUNER)
    out = memotune(
        "bench",
        "--pipeline",
        "synthetic-3",
        "--tuners",
        "random,ei,mine.py:Shifted",
        "--reference",
        "ei",
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
    assert "$ memotune bench --pipeline synthetic-3" in out.stdout  # the command above the table
    assert "W/T/L vs ei" in out.stdout and "budget in tuner" in out.stdout
    table = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert table["pipeline"] == "synthetic-3" and table["seeds"] == 2
    assert table["failed_runs"] == [] and table["reference"] == "ei"
    assert list(table["tuners"]) == ["random", "ei", "mine.py:Shifted"]
    for tuner, row in table["tuners"].items():
        assert row["trials_mean"] == 6 and row["test_mean"] is not None
        assert {"test_sem", "best_sem", "gain_vs_baselines", "tuner_share"} <= set(row)
        assert {"tuner_seconds_per_proposal", "cache_hit_share"} <= set(row)
        if tuner == "ei":
            assert row["paired"] is None
        else:
            pair = row["paired"]
            assert pair["reference"] == "ei" and pair["seeds"] == 2
            assert pair["wins"] + pair["ties"] + pair["losses"] == 2 and "p_value" in pair
    assert [len(run["curve"]) for run in table["runs"]] == [6] * 6
    assert all(run["test"] == run["curve"][-1][2] for run in table["runs"])
    record = table["provenance"]
    assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)
    assert Path(record["source"], "memotune", "bench").is_dir()  # the code that ran
    assert {"platform", "cpu_count", "python", "torch", "hostname"} <= set(record["machine"])
    assert record["command"].startswith("memotune bench --pipeline synthetic-3 --tuners")
    assert record["wall_seconds"] > 0 and record["started"]
    for tuner, (_, means, _) in anytime_curves(table).items():  # the plot ends at the table
        assert means[-1] == pytest.approx(table["tuners"][tuner]["test_mean"])
    assert (tmp_path / "out" / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = memotune("bench", "--table", "out/bench.json", "--markdown", cwd=tmp_path)
    assert saved.returncode == 0, saved.stderr
    assert "```bash\nmemotune bench --pipeline synthetic-3" in saved.stdout
    rows = [line for line in saved.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 3 and rows[2].startswith("|random")  # header, rule, one per tuner
    redrawn = memotune("bench", "--table", "out/bench.json", "--plot", "again.png", cwd=tmp_path)
    assert redrawn.returncode == 0, redrawn.stderr
    assert (tmp_path / "again.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # runs made later join the table: another tuner, more seeds, a tuner rerun
    more = ["--pipeline", "synthetic-3", "--trials", "6", "--json", "later.json"]
    later = memotune("bench", *more, "--tuners", "tpe,ei", "--seeds", "2", cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    args = ["--reference", "tpe", "--json", "merged.json"]
    merged = memotune("bench", "--table", "out/bench.json", "later.json", *args, cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    table = json.loads((tmp_path / "merged.json").read_text())
    rerun = json.loads((tmp_path / "later.json").read_text())
    assert list(table["tuners"]) == ["random", "ei", "mine.py:Shifted", "tpe"]
    assert [r for r in table["runs"] if r["tuner"] == "ei"] == [
        r for r in rerun["runs"] if r["tuner"] == "ei"
    ]
    pair = table["tuners"]["random"]["paired"]
    assert pair["reference"] == "tpe" and pair["seeds"] == 2
    assert [p["runs"] for p in table["provenance"]["merged"]] == [
        {"random": [0, 1], "mine.py:Shifted": [0, 1]},
        {"tpe": [0, 1], "ei": [0, 1]},
    ]
    assert merged.stdout.count("$ memotune bench --") == 2
    extra = ["--seeds", "1", "--first-seed", "2", "--json", "seed2.json"]
    seed2 = memotune("bench", *more[:4], "--tuners", "random", *extra, cwd=tmp_path)
    assert seed2.returncode == 0, seed2.stderr
    assert [r["seed"] for r in json.loads((tmp_path / "seed2.json").read_text())["runs"]] == [2]
    joined = memotune(
        "bench", "--table", "merged.json", "seed2.json", "--json", "j.json", cwd=tmp_path
    )
    assert joined.returncode == 0, joined.stderr
    joined = json.loads((tmp_path / "j.json").read_text())
    assert joined["tuners"]["random"]["runs"] == 3
    assert [p["runs"] for p in joined["provenance"]["merged"]][-1] == {"random": [2]}
    other = json.loads((tmp_path / "seed2.json").read_text())
    (tmp_path / "other.json").write_text(json.dumps({**other, "trials": 3}))  # another benchmark
    refused = memotune("bench", "--table", "out/bench.json", "other.json", cwd=tmp_path)
    assert refused.returncode != 0 and "trials: 6 vs 3" in refused.stderr


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
    assert table["tuners"]["random"]["paired"] is None  # the reference, and ei has no runs
    assert [(f["tuner"], f["seed"]) for f in table["failed_runs"]] == [("ei", 0)]


def test_a_stopped_bench_stops_its_runs_and_keeps_the_finished_ones(tmp_path):
    (tmp_path / "slow.py").write_text(  # each trial sleeps; each run process notes its pid
        "import os, time\n"
        "from pathlib import Path\n"
        "from memotune import Float, Pipeline, stage\n"
        "@stage(space={'x': Float(0.0, 1.0)})\n"
        "def score(inputs, x):\n"
        "    (Path(__file__).parent / f'pid-{os.getpid()}').touch()\n"
        "    time.sleep(1.0)\n"
        "    return {'objective': x}\n"
        "pipeline = Pipeline([score])\n"
    )
    bench = subprocess.Popen(
        [sys.executable, "-m", "memotune", "bench", "--pipeline", "slow.py", "--tuners",
         "random", "--seeds", "4", "--trials", "3", "--processes", "1", "--json", "b.json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = bench.stderr.readline()  # the first finished run's line
    assert first.startswith("[1/4] random seed"), first
    saved = json.loads((tmp_path / "b.json").read_text())  # written as each run finishes
    assert [r["seed"] for r in saved["runs"]] == [0] and saved["runs"][0]["trials"] == 3
    bench.send_signal(signal.SIGTERM)
    _, err = bench.communicate(timeout=60)
    assert bench.returncode == 143, err
    assert "stopped after" in err and "of 4 runs; they are in b.json" in err
    assert "memotune: terminated" in err and "Traceback" not in err
    kept = json.loads((tmp_path / "b.json").read_text())
    assert 1 <= len(kept["runs"]) < 4
    assert kept["provenance"]["planned_runs"] == 4
    pids = [int(p.name.removeprefix("pid-")) for p in tmp_path.glob("pid-*")]
    assert pids  # the run processes
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)  # no run goes on after the bench
    table = memotune("bench", "--table", "b.json", cwd=tmp_path)
    assert f"{kept['provenance']['finished_runs']} of 4 runs" in table.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_file_with_several_pipelines_runs_the_one_named_pipeline_unless_told(tmp_path):
    from memotune.loading import load_pipeline

    path = tmp_path / "both.py"
    path.write_text(
        "from memotune import Float, Pipeline, stage\n"
        "@stage(space={'v': Float(0.0, 1.0)})\ndef a(x, v):\n    return v\n"
        "pipeline = Pipeline([a], name='main')\nfast = Pipeline([a], name='fast')\n"
    )
    assert load_pipeline(str(path)).name == "main"
    assert load_pipeline(f"{path}:fast").name == "fast"
