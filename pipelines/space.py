"""Search-space parameters: ``Float``, ``Int`` and ``Choice``.

A stage's search space is a ``dict`` of parameter name to one of these. Each
parameter validates the values a configuration gives it and normalizes them
to plain Python scalars, so that keys built from them are canonical.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Names a stage parameter may not take: the stage function's own arguments.
RESERVED_NAMES = frozenset({"upstream", "context"})


class SpaceError(ValueError):
    """An invalid search space, or a value outside one."""


def plain_scalar(value: Any) -> Any:
    """Convert numpy scalars to the equivalent Python scalar; leave others as they are."""
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class Float:
    """A real number in ``[low, high]``, searched on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False

    def check(self, where: str) -> None:
        _check_bounds(self, where)

    def validate(self, value: Any, where: str) -> float:
        value = plain_scalar(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value) or not self.low <= value <= self.high:
            raise SpaceError(f"{where}: {value!r} is outside [{self.low}, {self.high}]")
        return value


@dataclass(frozen=True)
class Int:
    """An integer in ``[low, high]`` (both included), on a log scale when ``log``."""

    low: int
    high: int
    log: bool = False

    def check(self, where: str) -> None:
        if int(self.low) != self.low or int(self.high) != self.high:
            raise SpaceError(f"{where}: Int bounds must be integers, got {self.low}, {self.high}")
        _check_bounds(self, where)

    def validate(self, value: Any, where: str) -> int:
        value = plain_scalar(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise SpaceError(f"{where}: expected an integer, got {value!r}")
            value = int(value)
        if not self.low <= value <= self.high:
            raise SpaceError(f"{where}: {value!r} is outside [{self.low}, {self.high}]")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of options (strings, numbers, booleans or None)."""

    options: tuple

    def __init__(self, options) -> None:
        object.__setattr__(self, "options", tuple(plain_scalar(o) for o in options))

    def check(self, where: str) -> None:
        if not self.options:
            raise SpaceError(f"{where}: Choice needs at least one option")
        for option in self.options:
            if option is not None and not isinstance(option, (str, int, float, bool)):
                raise SpaceError(
                    f"{where}: Choice options must be str, int, float, bool or None, got {option!r}"
                )
        if len(set(map(_typed, self.options))) != len(self.options):
            raise SpaceError(f"{where}: Choice has duplicate options {list(self.options)}")

    def validate(self, value: Any, where: str) -> Any:
        value = plain_scalar(value)
        for option in self.options:
            if _typed(option) == _typed(value):
                return option
        for option in self.options:  # 2.0 selects the option 2, but True never selects 1
            if _is_number(option) and _is_number(value) and option == value:
                return option
        raise SpaceError(f"{where}: {value!r} is not one of {list(self.options)}")

    def index(self, value: Any) -> int:
        """Position of ``value`` among the options (``value`` already validated)."""
        return [_typed(o) for o in self.options].index(_typed(value))


Param = Float | Int | Choice


def check_space(space: dict[str, Param], stage: str) -> dict[str, Param]:
    """Validate a stage's search space; raise ``SpaceError`` naming stage and parameter."""
    if not isinstance(space, dict):
        raise SpaceError(f"stage '{stage}': space must be a dict of name to Float/Int/Choice")
    for name, param in space.items():
        where = f"stage '{stage}', parameter '{name}'"
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise SpaceError(f"{where}: parameter names must be Python identifiers")
        if name in RESERVED_NAMES or name.startswith("_"):
            raise SpaceError(
                f"{where}: the name is reserved (reserved: {sorted(RESERVED_NAMES)} "
                "and names starting with '_')"
            )
        if not isinstance(param, (Float, Int, Choice)):
            raise SpaceError(f"{where}: expected Float, Int or Choice, got {param!r}")
        param.check(where)
    return dict(space)


def _check_bounds(param: Float | Int, where: str) -> None:
    kind = type(param).__name__
    for bound in (param.low, param.high):
        if isinstance(bound, bool) or not isinstance(plain_scalar(bound), (int, float)):
            raise SpaceError(f"{where}: {kind} bounds must be numbers, got {bound!r}")
        if not math.isfinite(bound):
            raise SpaceError(f"{where}: {kind} bounds must be finite, got {bound!r}")
    if param.low >= param.high:
        raise SpaceError(
            f"{where}: {kind} needs low < high, got low={param.low}, high={param.high}"
        )
    if param.log and param.low <= 0:
        raise SpaceError(f"{where}: {kind}(log=True) needs low > 0, got low={param.low}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _typed(value: Any) -> tuple[str, Any]:
    """Compare options by type as well as value, so that True, 1 and 1.0 stay distinct."""
    return (type(value).__name__, value)
