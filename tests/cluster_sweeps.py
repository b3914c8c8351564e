"""Sweeps on a real two-node Ray cluster on this machine, run in a process of their
own (a process joins one Ray cluster at a time) by tests/test_ray_cluster.py.

    python tests/cluster_sweeps.py SCENARIO WORKDIR

writes what happened to WORKDIR/result.json. Each stage notes where it ran
(node, pid) in WORKDIR/events/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from memotune import Float, Int, Pipeline, StageCache, stage, tune
from memotune.pipelines.ray_cluster import ClusterError
from memotune.pipelines.ray_runner import RayRunner


def note(folder: str, **event) -> None:
    path = Path(folder) / "events" / f"{os.getpid()}.jsonl"
    path.parent.mkdir(exist_ok=True)
    node = ray.get_runtime_context().get_node_id()
    with path.open("a") as f:
        f.write(json.dumps({"pid": os.getpid(), "node": node, "time": time.time(), **event}))
        f.write("\n")


def events(workdir: Path) -> list[dict]:
    return [json.loads(line) for p in (workdir / "events").glob("*.jsonl") for line in p.open()]


@stage(space={"a": Int(0, 5)})
def prepare(folder, a):
    note(folder, stage="prepare", a=a)
    time.sleep(1.0)
    return {"folder": folder, "a": a}


@stage(space={"b": Float(0.0, 1.0)})
def train(data, b):
    note(data["folder"], stage="train", a=data["a"], b=b)
    time.sleep(1.5)
    return {"objective": data["a"] + b}


def sweep(workdir: Path, cluster: Cluster, trials: int) -> dict:
    result = tune(
        Pipeline([prepare, train], inputs=str(workdir)),
        tuner="random",
        trials=trials,
        workers=2,
        study="cluster",
        storage=workdir / "studies",
        cache=workdir / "cache",
        address=cluster.address,
        progress=False,
        tracking=False,
    )
    return {
        "trials": [
            {"id": r.trial_id, "status": r.status, "error": r.error, "objective": r.objective}
            for r in result.trials
        ],
        "journal": str(result.path / "journal.sqlite"),
    }


def when_a_stage_starts(workdir: Path, action, *, stage_name: str, on_node: str | None = None):
    """Run ``action(event)`` in the background once a matching stage has started."""

    def watch() -> None:
        while True:
            for event in events(workdir):
                if event["stage"] == stage_name and on_node in (None, event["node"]):
                    time.sleep(0.3)  # well inside the stage's sleep
                    action(event)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def spread(workdir: Path, cluster: Cluster) -> dict:
    """Stages run on both nodes; two trials sharing a prefix compute it once."""
    outcome = sweep(workdir, cluster, trials=6)
    outcome["stage_nodes"] = sorted({e["node"] for e in events(workdir)})
    ray.init(address=cluster.address)
    folder = workdir / "shared"
    folder.mkdir()
    runner = RayRunner(Pipeline([prepare, train], inputs=str(folder)), StageCache(folder / "cache"))
    runner.submit(100, {"prepare": {"a": 5}, "train": {"b": 0.25}})
    runner.submit(101, {"prepare": {"a": 5}, "train": {"b": 0.75}})
    shared = []
    while runner.running():
        shared += runner.wait()
    ray.shutdown()
    outcome["shared_prefix_runs"] = sum(e["stage"] == "prepare" for e in events(folder))
    outcome["shared_trials"] = [
        {"status": r.status, "shared": [s.shared for s in r.stages]} for r in shared
    ]
    return outcome


def kill_worker(workdir: Path, cluster: Cluster) -> dict:
    """SIGKILL the worker process running a train stage mid-stage."""
    killed = {}

    def kill(event: dict) -> None:
        killed.update(event)
        os.kill(event["pid"], signal.SIGKILL)

    when_a_stage_starts(workdir, kill, stage_name="train")
    outcome = sweep(workdir, cluster, trials=5)
    outcome["killed"] = killed
    return outcome


def remove_node(workdir: Path, cluster: Cluster) -> dict:
    """Take the second node away while one of its stages runs."""
    worker = cluster.list_all_nodes()[1]
    removed = {}

    def remove(event: dict) -> None:
        removed.update(event)
        cluster.remove_node(worker, allow_graceful=False)

    when_a_stage_starts(workdir, remove, stage_name="train", on_node=worker.node_id)
    outcome = sweep(workdir, cluster, trials=5)
    outcome["removed"] = removed
    outcome["worker_node"] = worker.node_id
    return outcome


def unreachable_cache(workdir: Path, cluster: Cluster) -> dict:
    """A third node whose file system shows another folder at the cache's path."""
    cache = workdir / "cache"
    cache.mkdir()
    (cache / "only-on-the-driver").write_text("x")
    ray_cli = Path(sys.executable).with_name("ray")
    script = f"mount -t tmpfs tmpfs {cache} && exec {ray_cli} start --address={cluster.address} "
    script += "--num-cpus=1 --block --disable-usage-stats"
    node = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    try:
        _wait_for_alive_nodes(cluster, 3)
        try:
            sweep(workdir, cluster, trials=2)
        except ClusterError as error:
            return {"error": str(error)}
        return {"error": None}
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)


def _wait_for_alive_nodes(cluster: Cluster, count: int) -> None:
    ray.init(address=cluster.address)
    try:
        deadline = time.time() + 120
        while sum(n["Alive"] for n in ray.nodes()) < count:
            if time.time() > deadline:
                raise TimeoutError(f"fewer than {count} Ray nodes came up")
            time.sleep(0.5)
    finally:
        ray.shutdown()


SCENARIOS = {
    "spread": spread,
    "kill-worker": kill_worker,
    "remove-node": remove_node,
    "unreachable-cache": unreachable_cache,
}


def main() -> None:
    scenario, workdir = SCENARIOS[sys.argv[1]], Path(sys.argv[2])
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 150 * 2**20},
    )
    cluster.add_node(num_cpus=1, object_store_memory=150 * 2**20)
    cluster.wait_for_nodes()
    try:
        outcome = scenario(workdir, cluster)
    finally:
        cluster.shutdown()
    (workdir / "result.json").write_text(json.dumps(outcome))


if __name__ == "__main__":
    main()
