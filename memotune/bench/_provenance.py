"""Where and how a comparison ran: the code (its folder and commit), the machine, the
command line, the time."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: The source tree memotune runs from (a git checkout, for an editable install).
SOURCE = Path(__file__).resolve().parents[2]


def provenance(argv: Sequence[str], started: float, finished: float) -> dict[str, Any]:
    """The record a bench JSON carries: the folder memotune ran from and its git commit
    (and whether the tree had uncommitted changes), the machine, the command line, when
    it started (UTC, ISO 8601) and the wall seconds it took. ``started``/``finished`` are
    ``time.time()`` values."""
    commit, dirty = git_state(SOURCE)
    return {
        "source": str(SOURCE),
        "commit": commit,
        "dirty": dirty,
        "machine": machine(),
        "command": "memotune " + shlex.join(argv),
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
        "wall_seconds": round(finished - started, 3),
    }


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """The commit checked out in ``folder`` and whether tracked files differ from it
    (None, None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def machine() -> dict[str, Any]:
    """The machine and software the runs used."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count()
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpus,
        "python": sys.version.split()[0],
        "torch": _version("torch"),
        "botorch": _version("botorch"),
        "memotune": _version("memotune"),
    }


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
