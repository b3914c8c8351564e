"""Joining a Ray cluster (or starting an embedded one) and checking that every
node can reach the stage cache."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from memotune.cache import StageCache
from memotune.errors import ClusterError

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
) -> Iterator[None]:
    """Ray for the length of a sweep.

    ``address`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``; default
    ``$RAY_ADDRESS``) joins an existing cluster, which stays up afterwards;
    where nothing answers at it within ``connect_timeout`` seconds (a wrong
    port, a dead head, a stale "current cluster" file behind ``"auto"``),
    :class:`ClusterError` says so instead of Ray retrying for minutes.
    Without one, an embedded local Ray starts now and stops with the sweep
    (never some other ``ray start`` cluster that happens to run on the machine).
    A Ray this process started before is used as it is and left running.
    """
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address != "local":
        check_answers(address, connect_timeout)
    options: dict = {"include_dashboard": False} if address == "local" else {}
    options["runtime_env"] = {"env_vars": QUIET_WORKERS}
    if num_cpus is not None and address == "local":
        options["num_cpus"] = num_cpus
    try:
        ray.init(address=address, log_to_driver=True, **options)
    except ConnectionError as error:
        raise ClusterError(f"cannot join the Ray cluster at {address!r}: {error}") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_answers(address: str, timeout: float) -> None:
    """Fail in one line if nothing accepts a connection where ``address`` points (for
    ``"auto"``: the cluster Ray's own lookup finds) within ``timeout`` seconds."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        if address.startswith("ray://"):
            target = address.removeprefix("ray://").split("/", 1)[0]
        else:
            target = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as error:
        raise ClusterError(f"no Ray cluster to join at {address!r}: {error}") from None
    if target is None:
        return
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        found = "" if target == address else f" (it points to {target})"
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ClusterError(
            f"no Ray cluster answers at {address!r}{found} within {timeout:g} s: {reason}; "
            "is the head node up (`ray status`)? (--connect-timeout sets the wait)"
        ) from None


def check_cache_reachable(cache: StageCache) -> None:
    """Fail with a clear message if some alive node cannot read and write ``cache.root``.

    The driver writes a probe file with a random token into the cache root; a
    zero-CPU task pinned to each node must find that very file and be able to
    write beside it. Nodes that share the folder (one machine, or a network
    file system mounted at the same path everywhere) pass.
    """
    token = secrets.token_hex(16)
    probe = cache.root / f".probe-{token}"
    probe.write_text(token)
    try:
        nodes = [node for node in ray.nodes() if node["Alive"]]
        refs = {
            _node_label(node): _probe_cache.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(str(cache.root), probe.name, token)
            for node in nodes
        }
        problems = []
        for label, ref in refs.items():
            try:
                problem = ray.get(ref, timeout=PROBE_TIMEOUT_SECONDS)
            except ray.exceptions.GetTimeoutError:
                problem = f"no answer within {PROBE_TIMEOUT_SECONDS}s"
            if problem:
                problems.append(f"node {label}: {problem}")
    finally:
        probe.unlink(missing_ok=True)
    if problems:
        raise ClusterError(
            f"the cache folder {cache.root} must be reachable at the same path from every Ray "
            "node (a shared or network file system); " + "; ".join(problems)
        )


@ray.remote
def _probe_cache(root: str, name: str, token: str) -> str | None:
    """On one node: ``None`` if the cache root holds the driver's probe and is writable."""
    folder = Path(root)
    try:
        if (folder / name).read_text() != token:
            return f"{folder / name} holds something else: another folder at the same path"
        scratch = folder / f"{name}-{secrets.token_hex(4)}"
        scratch.write_text(token)
        scratch.unlink()
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return None


def _node_label(node: dict) -> str:
    return f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:8]})"
