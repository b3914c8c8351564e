"""Joining a Ray cluster (or starting an embedded one) and checking that every
node can reach the stage cache."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from memotune.cache import StageCache

from .ray_join import ClusterError, check_answers, check_token
from .ray_losses import notices_log, ray_notices_to

#: A failed stage fails the tasks after it with the same error; the driver reports it
#: once (with the trial), so the workers must not print it again as "unhandled".
QUIET_WORKERS = {"RAY_IGNORE_UNHANDLED_ERRORS": "1"}

#: How long a node may take to answer the cache probe (it starts a worker process).
PROBE_TIMEOUT_SECONDS = 120


@contextmanager
def ray_connection(
    address: str | None = None,
    *,
    connect_timeout: float,
    num_cpus: int | None = None,
) -> Iterator[bool]:
    """Ray for the length of a sweep; yields whether this call connected (and so
    disconnects at the end, which stops the sweep's tasks with it).

    ``address`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``; default
    ``$RAY_ADDRESS``) joins an existing cluster, which stays up afterwards;
    where nothing answers at it within ``connect_timeout`` seconds (a wrong
    port, a dead head, a stale "current cluster" file behind ``"auto"``), or
    it requires a token this process lacks, :class:`ClusterError` says so
    instead of Ray retrying for minutes.
    Without one, an embedded local Ray starts now and stops with the sweep
    (never some other ``ray start`` cluster that happens to run on the machine).
    A Ray this process started before is used as it is and left running.
    While the sweep runs, Ray's notices about lost nodes and retried tasks go to
    a log file in Ray's session folder (see :mod:`.ray_losses`).
    """
    if ray.is_initialized():
        yield False
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address != "local":
        head = check_answers(address, connect_timeout)
        if head is not None and not address.startswith("ray://"):
            check_token(address, head)
    options: dict = {"include_dashboard": False} if address == "local" else {}
    options["runtime_env"] = {"env_vars": QUIET_WORKERS}
    if num_cpus is not None and address == "local":
        options["num_cpus"] = num_cpus
    try:
        with _quiet_auth_notice(address == "local"):
            ray.init(address=address, log_to_driver=True, **options)
    except ConnectionError as error:
        raise ClusterError(f"cannot join the Ray cluster at {address!r}: {error}") from None
    with ray_notices_to(notices_log()):
        try:
            yield True
        finally:
            ray.shutdown()


@contextmanager
def _quiet_auth_notice(quiet: bool) -> Iterator[None]:
    """Ray turns token authentication on for a cluster it starts and warns that it did,
    on every start; for the embedded Ray, which lives as long as the sweep, memotune
    keeps that one warning off the terminal. (Setting ``RAY_AUTH_MODE=token`` instead
    works only before Ray has read its configuration, at import.)"""

    def not_the_notice(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")

    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if quiet:
        logger.addFilter(not_the_notice)
    try:
        yield
    finally:
        logger.removeFilter(not_the_notice)


def check_cache_reachable(cache: StageCache) -> None:
    """Fail with a clear message if some alive node cannot read and write the cache.

    The driver leaves a probe with a random token in the cache; a zero-CPU task
    pinned to each node must find that very probe and be able to write beside
    it. Nodes that share a cache folder (one machine, or a network file system
    mounted at the same path everywhere) or reach the same bucket pass.
    """
    with cache.probe() as token:
        nodes = [node for node in ray.nodes() if node["Alive"]]
        refs = {
            _node_label(node): _probe_cache.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(cache, token)
            for node in nodes
        }
        problems = []
        for label, ref in refs.items():
            try:
                problem = ray.get(ref, timeout=PROBE_TIMEOUT_SECONDS)
            except ray.exceptions.GetTimeoutError:
                problem = f"no answer within {PROBE_TIMEOUT_SECONDS}s"
            except ray.exceptions.RayTaskError as error:  # the cache did not even open there
                cause = error.cause
                problem = f"{type(cause).__name__}: {cause}"
            if problem:
                problems.append(f"node {label}: {problem}")
    if problems:
        raise ClusterError(f"{cache.reach}; " + "; ".join(problems))


@ray.remote
def _probe_cache(cache: StageCache, token: str) -> str | None:
    """On one node: ``None`` if the cache holds the driver's probe and takes a write."""
    return cache.check_probe(token)


def _node_label(node: dict) -> str:
    return f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"
