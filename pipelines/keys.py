"""Canonical encodings of stage settings and the prefix keys built from them.

Stage k's key is ``H(stage name, stage version, canonical params_k, key_{k-1})``.
Canonical means the same bytes in every process and every run: JSON with
sorted keys and no whitespace, floats written by their exact ``repr`` (what
``json`` does), numpy scalars turned into Python ones first.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from .space import plain_scalar

#: The upstream key of a pipeline's first stage when the pipeline has no inputs.
ROOT_KEY = ""


def canonical_json(value: Any) -> str:
    """Serialize ``value`` to the one JSON text every process agrees on."""
    return json.dumps(_normalize(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def stage_key(name: str, version: str, params: dict[str, Any], upstream_key: str) -> str:
    """The cache key of one stage's output given its settings and its upstream key."""
    payload = canonical_json([name, version, params, upstream_key])
    return hashlib.sha256(payload.encode()).hexdigest()


def lineage_key(upstream_lineage: str, name: str, version: str) -> str:
    """Identifies a chain of stage (name, version) pairs, whatever their params.

    The cache uses it to find every cached output of a pipeline's first k+1
    stages without knowing their parameter values.
    """
    return hashlib.sha256(canonical_json([upstream_lineage, name, version]).encode()).hexdigest()


def _normalize(value: Any) -> Any:
    value = plain_scalar(value)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"canonical JSON needs string keys, got {list(value)}")
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"canonical JSON cannot hold {value!r}")
        return value + 0.0  # -0.0 becomes 0.0: equal values, equal keys
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"canonical JSON cannot hold {type(value).__name__} {value!r}")
