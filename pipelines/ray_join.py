"""Before joining a Ray cluster: does anything answer at the address, and does it let
this process in? Each check fails in one line (:class:`ClusterError`) where Ray would
retry for minutes. Ray is imported only when a check runs, so the command line can
name ``ClusterError`` without loading Ray."""

from __future__ import annotations

import os
import socket


class ClusterError(RuntimeError):
    """The cluster cannot run the sweep as asked (e.g. a node cannot reach the cache)."""


def check_answers(address: str, timeout: float) -> str | None:
    """Fail in one line if nothing accepts a connection where ``address`` points (for
    ``"auto"``: the cluster Ray's own lookup finds) within ``timeout`` seconds.

    Returns the head's ``host:port`` (``None`` where Ray's lookup gives nothing)."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        if address.startswith("ray://"):
            target = address.removeprefix("ray://").split("/", 1)[0]
        else:
            target = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as error:
        raise ClusterError(f"no Ray cluster to join at {address!r}: {error}") from None
    if target is None:
        return None
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
    return target


def check_token(address: str, head: str) -> None:
    """Fail in one line if the cluster whose head (GCS) is at ``head`` refuses this
    process's token authentication (no token, or another one).

    Ray's own join retries for 20 s, printing a warning a second, and then says only
    that it failed to connect. One request here answers at once (Ray still prints
    its warning for it once). For ``"auto"`` the token settings are first completed
    the way ``ray.init`` completes them.
    """
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError, RayError

    if address == "auto":  # a token on this machine turns token mode on, as in ray.init
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    try:
        GcsClient(address=head)
    except AuthenticationError:
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            fix = "give this process the cluster's token"
        else:
            fix = "set RAY_AUTH_MODE=token and give this process the cluster's token"
        raise ClusterError(
            f"the Ray cluster at {address!r} requires token authentication and refused "
            f"this process: {fix} (RAY_AUTH_TOKEN, or a file named by RAY_AUTH_TOKEN_PATH, "
            "default ~/.ray/auth_token), as on every node"
        ) from None
    except RayError:  # not an authentication problem: ray.init says what it finds
        pass
