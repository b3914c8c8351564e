"""``memotune ui``: the MLflow UI over the store your sweeps log to."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memotune.tracking.runs import runs_page
from memotune.tracking.store import is_server, resolve_uri, server_is_up

EXAMPLES = """examples:
  memotune ui                                  # the runs in ./mlflow.db, at http://127.0.0.1:5000
  memotune ui --port 5050
  memotune ui --tracking-uri sqlite:////shared/sweeps/mlflow.db
  MLFLOW_TRACKING_URI=http://mlflow.internal:5000 memotune ui   # a server: prints its address
"""

STARTUP_SECONDS = 180.0
RUNS_VIEW = "workflowType=machine_learning"  # MLflow 3 opens on its GenAI view otherwise


class UIError(ValueError):
    """The UI could not be started (printed as one line)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="browse studies, sweeps and trials in the MLflow UI",
        description=(
            "Start the MLflow UI on this machine against the store your sweeps log to "
            "(--tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here) and "
            "print its address. It runs until Ctrl-C. A tracking server already serves "
            "its own UI: for one, the address is printed."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tracking-uri", metavar="URI", help="the MLflow store to browse")
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port to serve on (5000)")
    parser.add_argument(
        "--verbose", action="store_true", help="show the MLflow server's own log lines"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    uri = resolve_uri(args.tracking_uri)
    if is_server(uri):
        print(f"{uri} is an MLflow tracking server; its UI is at {uri}")
        return
    _check_store_exists(uri)
    _check_port_free(args.host, args.port)
    address = f"http://{args.host}:{args.port}"
    print(f"starting the MLflow UI for {uri} …", file=sys.stderr, flush=True)
    with tempfile.TemporaryFile(mode="w+", prefix="memotune-ui-") as server_log:
        server = _start(uri, args.host, args.port, None if args.verbose else server_log)
        try:
            _wait_until_up(server, address, server_log)
            print(f"MLflow UI: {address}  (store {uri}; Ctrl-C to stop)")
            print(f"studies, in the runs view: {address}/#/experiments?{RUNS_VIEW}", flush=True)
            for name, experiment_id in _recent_studies(uri):
                print(f"  study {name}: {runs_page(address, experiment_id)}", flush=True)
            code = server.wait()
            raise UIError(f"the MLflow server stopped (exit code {code}){_tail(server_log)}")
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see memotune.signals)
            print("stopping the MLflow UI", file=sys.stderr, flush=True)
        finally:
            _stop(server)


def _start(uri: str, host: str, port: int, output) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no GenAI job workers
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    return subprocess.Popen(
        command,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,  # Ctrl-C reaches memotune, which stops the server's group
    )


def _wait_until_up(server: subprocess.Popen, address: str, server_log) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server_is_up(address, timeout=1.0):
        if server.poll() is not None:
            raise UIError(f"the MLflow server did not start{_tail(server_log)}")
        if time.monotonic() > deadline:
            raise UIError(
                f"the MLflow server did not answer at {address} within "
                f"{STARTUP_SECONDS:.0f} s{_tail(server_log)}"
            )
        time.sleep(0.25)


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and the processes it started (its own process group)."""
    if server.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _recent_studies(uri: str, limit: int = 10) -> list[tuple[str, str]]:
    """The most recently created studies in the store (name, experiment id)."""
    from mlflow import MlflowClient

    experiments = MlflowClient(tracking_uri=uri).search_experiments(
        filter_string="tags.`memotune.pipeline` != ''",
        order_by=["creation_time DESC"],
        max_results=limit,
    )
    return [(e.name, e.experiment_id) for e in experiments]


def _check_store_exists(uri: str) -> None:
    """A local store that does not exist yet is a mistake (a wrong folder), not a new one."""
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if uri.startswith("file:") or "://" not in uri:
        path = uri.removeprefix("file://").removeprefix("file:")
    if path is not None and not Path(path).exists():
        raise UIError(
            f"no MLflow store at {path}: run a sweep here first (memotune tune …), or give "
            "the store with --tracking-uri"
        )


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UIError(
                f"cannot serve on {host}:{port} ({error.strerror}); pick another with --port"
            ) from None


def _tail(server_log, lines: int = 5) -> str:
    if server_log is None or server_log.closed:
        return ""
    server_log.flush()
    server_log.seek(0)
    text = [line for line in server_log.read().splitlines() if line.strip()][-lines:]
    return (": " + " | ".join(line.strip() for line in text)) if text else ""
