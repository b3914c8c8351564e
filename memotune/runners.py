"""Which runner executes a sweep's trials, with Ray joined or started for its length."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from memotune.cache import StageCache
from memotune.pipelines import LocalRunner, Pipeline
from memotune.tuner.study import Runner

RUNNERS = ("ray", "local")


@contextmanager
def open_runner(
    kind: str,
    pipeline: Pipeline,
    cache: StageCache | None,
    *,
    address: str | None = None,
    retries: int = 3,
) -> Iterator[Runner]:
    """The runner a sweep asked for, with Ray joined or started for its length."""
    if kind not in RUNNERS:
        raise ValueError(f"unknown runner {kind!r}; choose one of: {', '.join(RUNNERS)}")
    if kind == "local":
        if address is not None:
            raise ValueError("address= joins a Ray cluster; it needs runner='ray'")
        yield LocalRunner(pipeline, cache)
        return
    from memotune.pipelines.ray_cluster import check_cache_reachable, ray_connection
    from memotune.pipelines.ray_runner import RayRunner

    with ray_connection(address):
        if cache is not None:
            check_cache_reachable(cache)
        yield RayRunner(pipeline, cache, max_retries=retries)
