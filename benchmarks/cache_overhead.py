"""What a cache hit costs next to computing the stage, in a folder and in object storage.

A stage that takes 1 s to compute returns either a 100 MB numpy array or a
small object. After one run stores it, a hit (key computation, index look-up,
signature check over the whole file, load) is timed several times; the median
is reported as a ratio to the stage's measured compute time. The object file
is in the OS page cache, as it is right after a stage writes it.

The same is timed for the cache in S3, as ratios to the folder's hit: a
*first* hit on a node that has nothing of the entry yet (index record and
object downloaded), and a *repeated* hit (served from the node's local copy).
The S3 server is moto's, started on 127.0.0.1 unless ``--s3-url`` names a
bucket prefix (endpoint and credentials from the usual AWS settings), so the
first-hit figure is memotune's own overhead plus a loopback transfer, not a
network's.

    python benchmarks/cache_overhead.py --json out/cache_overhead.json
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune import Choice, Pipeline, StageCache, stage  # noqa: E402
from memotune.pipelines.execution import execute_stage, load_deepest  # noqa: E402

COMPUTE_SECONDS = 1.0
LARGE_BYTES = 100 * 2**20
SECRET = "benchmark-secret-0123456789"


@stage(space={"kind": Choice(["large", "small"])})
def produce(inputs, kind):
    started = time.perf_counter()
    if kind == "large":
        output = np.random.default_rng(0).random(LARGE_BYTES // 8)
    else:
        output = {"accuracy": 0.97, "epochs": 12, "notes": "a small stage output"}
    time.sleep(max(0.0, COMPUTE_SECONDS - (time.perf_counter() - started)))
    return output


@stage
def summarize(value):
    return 0.0


def hit_seconds(pipeline: Pipeline, cache: StageCache, kind: str, repeats: int) -> dict:
    config = {"produce": {"kind": kind}}
    plans = pipeline.plan(config)
    _, _, records = load_deepest(pipeline, plans, cache)  # nothing cached yet: compute and store
    assert not records
    _, computed = execute_stage(pipeline, plans[0], None, cache, [])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        depth, value, _ = load_deepest(pipeline, pipeline.plan(config), cache)
        times.append(time.perf_counter() - started)
        assert depth == 1
        del value
    return {"compute": computed.compute_seconds, "hit": statistics.median(times)}


def first_and_repeated_hits(pipeline: Pipeline, url: str, kind: str, repeats: int) -> dict:
    """Object storage: store from one node, then time hits on fresh nodes (each with an
    empty local folder) and repeated hits on one node."""
    config = {"produce": {"kind": kind}}
    with tempfile.TemporaryDirectory() as folder:
        on_node(url, Path(folder) / "writer")
        plans = pipeline.plan(config)
        execute_stage(pipeline, plans[0], None, on_node(url, Path(folder) / "writer"), [])
        first, repeated = [], []
        for attempt in range(repeats):
            cache = on_node(url, Path(folder) / f"node-{attempt}")
            for times in (first, repeated):
                started = time.perf_counter()
                depth, value, _ = load_deepest(pipeline, pipeline.plan(config), cache)
                times.append(time.perf_counter() - started)
                assert depth == 1
                del value
    return {"first": statistics.median(first), "repeated": statistics.median(repeated)}


def on_node(url: str, local: Path) -> StageCache:
    """The cache as a node whose local folder is ``local`` opens it."""
    os.environ["MEMOTUNE_CACHE_LOCAL"] = str(local)
    return StageCache(url, secret=SECRET)


@contextmanager
def loopback_s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 in a process of its own, with a fresh bucket; yields a
    cache URL in it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="benchmark",
        AWS_SECRET_ACCESS_KEY="benchmark",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        _wait_for_port(port)
        import fsspec

        bucket = f"memotune-bench-{uuid.uuid4().hex[:8]}"
        fsspec.filesystem("s3").mkdir(bucket)
        yield f"s3://{bucket}/cache"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_port(port: int) -> None:
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--s3-url", help="an S3 prefix to time instead of a loopback moto server")
    args = cli.parse_args()
    pipeline = Pipeline([produce, summarize], cost_unit="seconds")
    with tempfile.TemporaryDirectory() as folder:
        cache = StageCache(Path(folder) / "cache", secret=SECRET)
        large = hit_seconds(pipeline, cache, "large", repeats=7)
        small = hit_seconds(pipeline, cache, "small", repeats=51)
    with _s3(args.s3_url) as url:
        remote_large = first_and_repeated_hits(pipeline, url, "large", repeats=5)
        remote_small = first_and_repeated_hits(pipeline, url, "small", repeats=21)
    report(
        {
            "hit_seconds_100mb": large["hit"],
            "hit_seconds_small": small["hit"],
            "compute_seconds": statistics.mean([large["compute"], small["compute"]]),
            "hit_ratio_100mb": large["hit"] / large["compute"],
            "hit_ratio_small": small["hit"] / small["compute"],
            "s3_first_hit_seconds_100mb": remote_large["first"],
            "s3_repeated_hit_seconds_100mb": remote_large["repeated"],
            "s3_first_hit_seconds_small": remote_small["first"],
            "s3_repeated_hit_seconds_small": remote_small["repeated"],
            "s3_first_hit_vs_local_100mb": remote_large["first"] / large["hit"],
            "s3_repeated_hit_vs_local_100mb": remote_large["repeated"] / large["hit"],
            "s3_first_hit_vs_local_small": remote_small["first"] / small["hit"],
            "s3_repeated_hit_vs_local_small": remote_small["repeated"] / small["hit"],
        },
        args.json,
    )


@contextmanager
def _s3(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with loopback_s3() as served:
        yield served


if __name__ == "__main__":
    main()
