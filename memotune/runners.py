"""Which runner executes a sweep's trials, with Ray joined or started for its length."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from memotune.cache import StageCache
from memotune.pipelines import LocalRunner, Pipeline, Runner

RUNNERS = ("ray", "local")
#: How long joining a Ray cluster may wait for its address to answer (seconds).
CONNECT_TIMEOUT_SECONDS = 30.0


@contextmanager
def open_runner(
    kind: str,
    pipeline: Pipeline,
    cache: StageCache | None,
    *,
    address: str | None = None,
    retries: int = 3,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
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

    with ray_connection(address, connect_timeout=connect_timeout) as connected:
        if cache is not None:
            check_cache_reachable(cache)
        # disconnecting stops this driver's tasks: cancelling them first only races Ray
        yield RayRunner(pipeline, cache, max_retries=retries, cancel_on_close=not connected)
