"""Errors that mean "the user can fix this", not "memotune broke": the CLI prints
them as one line, without a traceback. Each lives with its owner (the cluster
code, the study); they are gathered here for the CLI, without importing Ray."""

from __future__ import annotations

from memotune.pipelines.ray_join import ClusterError
from memotune.tuner.study import TooManyFailures

__all__ = ["ClusterError", "TooManyFailures"]
