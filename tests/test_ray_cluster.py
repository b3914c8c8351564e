"""Sweeps on a real two-node Ray cluster (``ray.cluster_utils.Cluster``) on this
machine. Each scenario runs in a process of its own: tests/cluster_sweeps.py."""

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("cluster_sweeps.py")


def run_scenario(name: str, workdir: Path) -> dict:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), name, str(workdir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads((workdir / "result.json").read_text())
    outcome["driver_output"] = done.stdout + done.stderr  # what the user would see
    return outcome


def journal(path: str) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT id, status FROM trials ORDER BY id").fetchall()


def all_accounted_for(outcome: dict, trials: int) -> None:
    assert sorted(t["id"] for t in outcome["trials"]) == list(range(trials))
    assert journal(outcome["journal"]) == [(i, "completed") for i in range(trials)]


def test_stages_run_on_both_nodes_and_a_shared_prefix_is_computed_once(tmp_path):
    outcome = run_scenario("spread", tmp_path)
    all_accounted_for(outcome, 6)
    assert len(outcome["stage_nodes"]) == 2
    assert outcome["shared_prefix_runs"] == 1
    assert sorted(t["shared"] for t in outcome["shared_trials"]) == [
        [False, False],
        [True, False],
    ]


def test_a_killed_worker_process_mid_stage_is_retried_and_no_trial_is_lost(tmp_path):
    outcome = run_scenario("kill-worker", tmp_path)
    all_accounted_for(outcome, 5)
    killed = outcome["killed"]
    assert killed["stage"] == "train"
    reruns = [
        e
        for e in _events(tmp_path)
        if e["stage"] == "train" and (e["a"], e["b"]) == (killed["a"], killed["b"])
    ]
    assert len(reruns) == 2 and killed["pid"] in {e["pid"] for e in reruns}
    output = outcome["driver_output"]
    assert re.search(r"^trial \d+: stage 'train' retried on node ", output, re.M), output
    assert "A worker died" not in output and "retries remaining" not in output


def test_removing_a_node_mid_sweep_leaves_the_sweep_to_finish(tmp_path):
    outcome = run_scenario("remove-node", tmp_path)
    all_accounted_for(outcome, 5)
    assert outcome["removed"]["node"] == outcome["worker_node"]
    after = [e for e in _events(tmp_path) if e["time"] > outcome["removed"]["time"] + 1.0]
    assert after and all(e["node"] != outcome["worker_node"] for e in after)
    output = outcome["driver_output"]  # one line per lost node and retried stage, no dump
    lost = rf"^node \S+ \S+ \({outcome['worker_node'][:8]}\) lost; 1 running stage retried$"
    assert re.search(lost, output, re.M), output
    assert re.search(r"^trial \d+: stage 'train' retried on node ", output, re.M), output
    for ray_says in ("Raylet is terminated", "[state-dump]", "retries remaining"):
        assert ray_says not in output, output
    notices = re.search(r"^Ray's own report of lost nodes and retried tasks: (\S+)$", output, re.M)
    assert notices, output
    kept = Path(notices[1]).read_text()  # Ray's account, whole, for whoever wants it
    assert "Raylet is terminated" in kept and "[state-dump]" in kept
    assert "retries remaining" in kept


@pytest.mark.slow  # 26 s on fc-v782: an error message; the cluster's sweeps are tested around it
def test_a_node_that_cannot_reach_the_cache_is_named_clearly(tmp_path):
    outcome = run_scenario("unreachable-cache", tmp_path)
    error = outcome["error"]
    assert error and "must be reachable at the same path from every Ray node" in error
    assert error.count("; node ") == 1  # only the third node, not the two that share it
    assert "FileNotFoundError" in error


def _events(workdir: Path) -> list[dict]:
    folder = workdir / "events"
    return [json.loads(line) for p in folder.glob("*.jsonl") for line in p.open()]
