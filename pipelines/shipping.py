"""Shipping user code to Ray's worker processes.

Ray unpickles a task's arguments before the task runs, and pickles a
function or class by reference to its module, so a worker must be able to
import that module. A pipeline file loaded from a path (``memotune tune
examples/x.py`` imports it as ``memotune_user_x_<hash>``), a script's helper
module or a test file is not importable on the workers. :class:`UserCode`
lists those modules with their files; a task imports them by path, under the
same names, before it unpickles anything of the user's (the runners send
those objects as object references or bytes that the task resolves itself).
Objects then keep their real classes everywhere, so a stage output whose
class lives in the pipeline file pickles into the cache and loads from it in
any process. The files must be readable at the same path on every node, like
the cache. Installed distributions (memotune included, editable installs
too) and the standard library are imported as usual. A ``__main__`` module
cannot be imported by name; cloudpickle sends its objects by value.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from importlib.metadata import packages_distributions
from pathlib import Path
from types import ModuleType
from typing import Any


class UserCodeError(ImportError):
    """A worker could not import one of the user's modules from its file."""


@dataclass(frozen=True)
class UserCode:
    """The user's own modules an object graph needs: ``(module name, file path)`` pairs."""

    modules: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, *objects: Any) -> UserCode:
        """The modules defining ``objects``, their types, and what they hold (closures,
        partials, dicts, lists, tuples, dataclasses, three levels down) that a worker
        cannot import by name."""
        found = {}
        for name in sorted(_module_names(objects)):
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            if module is not None and name != "__main__" and path and not is_installed(module):
                found[name] = str(Path(path).resolve())
        return cls(tuple(found.items()))

    def load(self) -> None:
        """Import every module not imported in this process yet, from its file."""
        for name, path in self.modules:
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None or not Path(path).is_file():
                raise UserCodeError(
                    f"module '{name}' is {path} on the driver, which this worker cannot read: "
                    "the pipeline's files must be at the same path on every node"
                )
            import_path(name, path)


def import_path(name: str, path: str | Path) -> ModuleType:
    """Import the file at ``path`` as module ``name``, registered in ``sys.modules``
    (so what it defines pickles by reference and its source can be read); a
    module that fails to import is not left half-registered."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_file(path: str | Path) -> ModuleType:
    """Import a user's Python file as a module with a stable name derived from its
    absolute path (``memotune_user_<stem>_<hash>``), registered in ``sys.modules`` (so
    what it defines pickles and its source can be read)."""
    path = Path(path).resolve()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return import_path(f"memotune_user_{path.stem}_{digest}", path)


def _module_names(objects: Iterable[Any], depth: int = 3) -> set[str]:
    names = set()
    for obj in objects:
        for candidate in (obj, type(obj)):
            name = getattr(candidate, "__module__", None)
            if isinstance(name, str):
                names.add(name)
        if depth > 0:
            names |= _module_names(_held(obj), depth - 1)
    return names


#: How many items of a container are looked into (containers of data are homogeneous).
_ITEMS = 50


def _held(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return list(obj.values())[:_ITEMS]
    if isinstance(obj, (list, tuple)):
        return list(obj[:_ITEMS])
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


def is_installed(module: ModuleType) -> bool:
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
