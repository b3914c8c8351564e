"""What MLflow tracking costs a sweep, with the store up, down or hung.

The same 40-trial random sweep over synthetic-3 (in-process runner) runs
with tracking off, into a local SQLite store, against a tracking URI where
nothing listens (connection refused), and against one that accepts
connections but never answers (a hung server); ``--server`` adds a real
``mlflow server`` on loopback. For each it reports the time the study loop
spent in the tracker's hooks per trial (the only tracking work on the
study's critical path), the sweep's wall time, and how long the end of the
study waited for logging to finish (or to give up).

    python benchmarks/tracking_overhead.py --json out/tracking_overhead.json [--server]
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune import tune  # noqa: E402
from memotune.stages.synthetic import synthetic_pipeline  # noqa: E402
from memotune.tracking import MlflowTracker  # noqa: E402
from memotune.tracking.store import server_is_up  # noqa: E402

TRIALS = 40


class TimedTracker(MlflowTracker):
    """The tracker, with the time spent in each of its hooks recorded."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri, announce=False)
        self.hooks: list[float] = []
        self.end_seconds = 0.0

    def on_trial_start(self, *args) -> None:
        started = time.perf_counter()
        super().on_trial_start(*args)
        self.hooks.append(time.perf_counter() - started)

    def on_trial_end(self, *args) -> None:
        started = time.perf_counter()
        super().on_trial_end(*args)
        self.hooks.append(time.perf_counter() - started)

    def on_study_end(self, *args) -> None:
        started = time.perf_counter()
        super().on_study_end(*args)
        self.end_seconds = time.perf_counter() - started


def sweep(folder: Path, name: str, uri: str | None) -> dict[str, float]:
    tracker = TimedTracker(uri) if uri else None
    started = time.perf_counter()
    tune(
        synthetic_pipeline("synthetic-3"),
        tuner="random",
        trials=TRIALS,
        study=name,
        storage=folder / "studies",
        cache=folder / "cache",
        runner="local",
        progress=False,
        tracking=False,
        callbacks=[tracker] if tracker else [],
    )
    figures = {f"{name}_sweep_s": time.perf_counter() - started}
    if tracker:
        figures[f"{name}_hook_ms_mean"] = 1000 * statistics.mean(tracker.hooks)
        figures[f"{name}_hook_ms_max"] = 1000 * max(tracker.hooks)
        figures[f"{name}_study_end_s"] = tracker.end_seconds
        figures[f"{name}_not_logged"] = len(tracker.outbox.pending() + tracker.outbox.dropped)
    return figures


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
        + ["--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}"]
        + ["--artifacts-destination", str(folder / "artifacts")],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while not server_is_up(uri, timeout=1.0):
        if server.poll() is not None:
            raise RuntimeError("mlflow server did not start")
        time.sleep(0.25)
    return server, uri


def main() -> None:
    options = parser(__doc__.splitlines()[0])
    options.add_argument("--server", action="store_true", help="also log to a real mlflow server")
    args = options.parse_args()
    json_path = str(Path(args.json).resolve()) if args.json else None
    figures: dict[str, float] = {"trials": TRIALS}
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="memotune-tracking-") as tmp:
        folder = Path(tmp)
        os.chdir(folder)
        figures |= sweep(folder, "off", None)
        figures |= sweep(folder, "sqlite", f"sqlite:///{folder / 'mlflow.db'}")
        figures |= sweep(folder, "refused", f"http://127.0.0.1:{free_port()}")
        with socket.socket() as hung:  # accepts connections (the kernel does), never answers
            hung.bind(("127.0.0.1", 0))
            hung.listen(64)
            figures |= sweep(folder, "hung", f"http://127.0.0.1:{hung.getsockname()[1]}")
        if args.server:
            server, uri = start_server(folder)
            try:
                figures |= sweep(folder, "server", uri)
            finally:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        os.chdir(home)
    report(figures, json_path)


if __name__ == "__main__":
    main()
