"""Where runs go: resolving the tracking URI, and asking a server whether it is up."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow's own default, in the working directory

#: MLflow's HTTP client retries a failed request with exponential backoff for
#: minutes and waits up to 120 s for an answer. Tracking runs off the study's
#: critical path and retries on its own, so memotune asks for short ones for
#: the length of a study (unless you set these yourself), and keeps MLflow's
#: run links out of the command's output.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    # MLflow prints two "View run" lines to stdout whenever a run on a server ends
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def resolve_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working
    directory (made absolute, so a later change of directory cannot move it)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri == DEFAULT_URI:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    return uri


def is_server(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (as opposed to a local store)."""
    return uri.startswith(("http://", "https://"))


def use_short_http_timeouts() -> list[str]:
    """Set MLflow's HTTP retry and timeout knobs to short values where not set already;
    return the names set, for :func:`restore_environment`."""
    names = [name for name in HTTP_DEFAULTS if name not in os.environ]
    for name in names:
        os.environ[name] = HTTP_DEFAULTS[name]
    return names


def restore_environment(names: list[str]) -> None:
    for name in names:
        os.environ.pop(name, None)


def server_is_up(uri: str, timeout: float = 2.0) -> bool:
    """Whether the tracking server at ``uri`` answers its health check within ``timeout``."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False
