"""Before joining a Ray cluster: does anything answer at the address? The check fails
in one line (:class:`ClusterError`) where Ray would retry for minutes. Ray is imported
only when a check runs, so the command line can name ``ClusterError`` without loading
Ray."""

from __future__ import annotations

import socket


class ClusterError(RuntimeError):
    """The cluster cannot run the sweep as asked (e.g. a node cannot reach the cache)."""


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
