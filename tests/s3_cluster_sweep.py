"""A sweep on a two-node Ray cluster whose nodes share no folder, the stage cache in S3.

    python tests/s3_cluster_sweep.py WORKDIR s3://bucket/prefix

(with the S3 endpoint and credentials in the environment). Node A is the head,
where the driver runs; node B is a ``ray start`` process that sees an empty
tmpfs in place of WORKDIR, where node A keeps its local index and copies.
``prepare`` runs only on A and ``train`` only on B (custom resources), so a
trial whose prefix is cached loads it on B from the bucket. Writes what
happened to WORKDIR/result.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import ray
from ray.cluster_utils import Cluster

from memotune import Float, Int, Pipeline, stage, tune


@stage(space={"a": Int(0, 1)}, resources={"node_a": 0.01})
def prepare(inputs, a):
    return {"a": a, "rows": np.full(200_000, a)}


@stage(space={"b": Float(0.0, 1.0)}, resources={"node_b": 0.01})
def train(data, b):
    return {"objective": float(data["rows"].mean()) + b}


def start_node_b(workdir: Path, address: str) -> subprocess.Popen:
    ray_cli = Path(sys.executable).with_name("ray")
    script = (
        f"mount -t tmpfs tmpfs {workdir} && MEMOTUNE_CACHE_LOCAL={workdir}/b-local "
        f"exec {ray_cli} start --address={address} --num-cpus=1 "
        """--resources='{"node_b": 1}' --block --disable-usage-stats"""
    )
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])


def wait_for_nodes(address: str, count: int, starting: subprocess.Popen) -> dict[str, str]:
    """Node ids of the ``node_a`` and ``node_b`` resources once ``count`` nodes are up."""
    ray.init(address=address)
    try:
        deadline = time.time() + 120
        while True:
            alive = [n for n in ray.nodes() if n["Alive"]]
            if len(alive) >= count:
                return {
                    name: n["NodeID"]
                    for n in alive
                    for name in ("node_a", "node_b")
                    if name in n["Resources"]
                }
            if starting.poll() is not None:
                raise RuntimeError(f"node B exited with {starting.returncode}")
            if time.time() > deadline:
                raise TimeoutError(f"fewer than {count} Ray nodes came up")
            time.sleep(0.5)
    finally:
        ray.shutdown()


def main() -> None:
    workdir, url = Path(sys.argv[1]), sys.argv[2]
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MEMOTUNE_CACHE_LOCAL"] = str(workdir / "a-local")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"node_a": 1},
            "object_store_memory": 150 * 2**20,
        },
    )
    node_b = start_node_b(workdir, cluster.address)
    try:
        nodes = wait_for_nodes(cluster.address, 2, node_b)
        result = tune(
            Pipeline([prepare, train]),
            tuner="random",
            trials=5,
            workers=1,
            seed=3,
            study="s3-sweep",
            storage=workdir / "studies",
            cache=url,
            address=cluster.address,
            progress=False,
            tracking=False,
        )
    finally:
        node_b.send_signal(signal.SIGTERM)
        node_b.wait(timeout=60)
        cluster.shutdown()
    outcome = {
        "nodes": nodes,
        "a_local": sorted(p.name for p in (workdir / "a-local").rglob("*.joblib")),
        "trials": [
            {
                "status": r.status,
                "a": r.config["prepare"]["a"],
                "stages": [
                    {"stage": s.stage, "hit": s.hit, "key": s.key, "node": s.node} for s in r.stages
                ],
            }
            for r in result.trials
        ],
    }
    (workdir / "result.json").write_text(json.dumps(outcome))


if __name__ == "__main__":
    main()
