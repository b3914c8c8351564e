"""Shipping user code to Ray workers that cannot import it.

Ray pickles a function by reference to its module when that module is
imported in the driver, so a worker must be able to import it too. A
pipeline file loaded from a path (``memotune tune examples/x.py``), a
script's or a test's module are not importable on the workers; their modules
are registered to be pickled by value instead. Installed distributions
(memotune included, editable installs too) and the standard library stay by
reference.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from importlib.metadata import packages_distributions
from types import ModuleType
from typing import Any

from ray import cloudpickle


def ship_by_value(*objects: Any) -> list[str]:
    """Register the modules of ``objects`` (and of the callables and data they hold)
    to be pickled by value unless they are installed; return the modules' names."""
    shipped = []
    for name in sorted(_module_names(objects)):
        module = sys.modules.get(name)
        if module is not None and name != "__main__" and not _installed(module):
            cloudpickle.register_pickle_by_value(module)
            shipped.append(name)
    return shipped


def _module_names(objects: Iterable[Any], depth: int = 3) -> set[str]:
    """The modules defining ``objects`` and their types, and those of what they hold
    (closures, partials, dicts, lists, tuples, dataclasses) down to ``depth`` levels."""
    names = set()
    for obj in objects:
        for candidate in (obj, type(obj)):
            name = getattr(candidate, "__module__", None)
            if isinstance(name, str):
                names.add(name)
        if depth > 0:
            names |= _module_names(_held(obj), depth - 1)
    return names


def _held(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if is_dataclass(obj) and not isinstance(obj, type):
        return [getattr(obj, f.name) for f in fields(obj)]
    held = []
    for cell in getattr(obj, "__closure__", None) or ():
        try:
            held.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    return held


def _installed(module: ModuleType) -> bool:
    """Whether a worker with this Python environment imports ``module`` by name: built
    in, in the standard library, or part of an installed (or editable) distribution."""
    top = module.__name__.partition(".")[0]
    return (
        top in sys.builtin_module_names
        or top in sys.stdlib_module_names
        or top in _distribution_packages()
    )


@functools.cache
def _distribution_packages() -> frozenset[str]:
    return frozenset(packages_distributions())
