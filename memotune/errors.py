"""Errors that mean "the user can fix this", not "memotune broke": the CLI prints
them as one line, without a traceback. Kept free of heavy imports."""

from __future__ import annotations

from typing import Any


class ClusterError(RuntimeError):
    """The cluster cannot run the sweep as asked (e.g. a node cannot reach the cache)."""


class TooManyFailures(RuntimeError):
    """The study stopped after too many consecutive failed trials; ``result`` has them all."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result
