"""Tuners by name, by import path, or as a class the user brings.

A tuner is named three ways: a registered name (``"eeipu"``, imported when
first asked for, so listing the names costs no BoTorch import), an import
path to a :class:`~memotune.tuner.Tuner` subclass (``"package.module:Class"``
or ``"path/to/file.py:Class"``), or the class itself. :func:`tuner_spec`
gives the text a study journals, so that a resumed study finds the same
tuner again.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

from memotune.pipelines.shipping import import_file, is_installed

from .base import Tuner

#: What ``tune()``, ``memotune tune`` and a ``Study`` use when no tuner is named.
DEFAULT_TUNER = "memo"

#: name → "module:class" within memotune.tuner
TUNERS: dict[str, str] = {
    "memo": "memo:MemoTuner",
    "eeipu": "eeipu:EEIPU",
    "ei": "bayes:GPTuner",
    "eips": "bayes:EIPS",
    "carbo": "bayes:CArBO",
    "ms-carbo": "bayes:MultiStageCArBO",
    "random": "random_search:RandomSearch",
    "tpe": "tpe:TPE",
}

TunerSpec = str | type[Tuner]


def tuner_class(spec: TunerSpec) -> type[Tuner]:
    """The tuner class ``spec`` names (see the module's docstring); ``ValueError`` if there
    is none, it is not a Tuner, or what it needs is not installed."""
    if isinstance(spec, type):
        chosen = spec
    elif not isinstance(spec, str):
        raise ValueError(f"a tuner is a name, an import path or a Tuner class, got {spec!r}")
    elif spec in TUNERS:
        module, _, cls = TUNERS[spec].partition(":")
        chosen = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    elif ":" in spec:
        chosen = _import(spec)
    else:
        known = ", ".join(sorted(TUNERS))
        raise ValueError(
            f"unknown tuner {spec!r}; choose one of: {known}, or give a Tuner subclass as "
            "'package.module:Class' or 'path/to/file.py:Class'"
        )
    if not (isinstance(chosen, type) and issubclass(chosen, Tuner)):
        raise ValueError(f"tuner {spec!r} is {chosen!r}, not a memotune.tuner.Tuner subclass")
    if inspect.isabstract(chosen):
        raise ValueError(f"tuner {spec!r} does not implement _propose (it is abstract)")
    chosen.require()
    return chosen


def tuner_spec(spec: TunerSpec) -> str:
    """How a study records the tuner ``spec`` names: its registered name, ``module:Class``
    for a class importable by name, else ``/absolute/file.py:Class``."""
    if isinstance(spec, str):
        if spec in TUNERS or ":" not in spec:
            return spec
        where, _, name = spec.rpartition(":")
        if where.endswith(".py") or "/" in where:
            return f"{Path(where).resolve()}:{name}"
        return spec
    for registered, target in TUNERS.items():
        module, _, cls = target.partition(":")
        if spec.__module__ == f"{__package__}.{module}" and spec.__qualname__ == cls:
            return registered
    module = sys.modules.get(spec.__module__)
    path = getattr(module, "__file__", None)
    if module is None or not path or (spec.__module__ != "__main__" and is_installed(module)):
        return f"{spec.__module__}:{spec.__qualname__}"
    return f"{Path(path).resolve()}:{spec.__qualname__}"


def make_tuner(spec: TunerSpec, pipeline, **options) -> Tuner:
    return tuner_class(spec)(pipeline, **options)


def _import(spec: str) -> object:
    where, _, name = spec.rpartition(":")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"tuner {spec!r}: no such file: {path}")
        module = import_file(path)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as error:
            raise ValueError(f"tuner {spec!r}: cannot import {where!r}: {error}") from None
    found: object = module
    for part in name.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ValueError(f"tuner {spec!r}: {where} has no {name!r}")
    return found
