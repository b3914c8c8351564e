"""Tuners by name. Each is imported when first asked for, so listing the names (the
CLI's help) costs no BoTorch import."""

from __future__ import annotations

import importlib

from .base import Tuner

#: name → "module:class" within memotune.tuner
TUNERS: dict[str, str] = {
    "eeipu": "eeipu:EEIPU",
    "ei": "bayes:GPTuner",
    "eips": "bayes:EIPS",
    "carbo": "bayes:CArBO",
    "ms-carbo": "bayes:MultiStageCArBO",
    "random": "random_search:RandomSearch",
    "tpe": "tpe:TPE",
}


def tuner_class(name: str) -> type[Tuner]:
    """The tuner class called ``name``; ``ValueError`` if unknown or if what it needs
    is not installed."""
    try:
        module, _, cls = TUNERS[name].partition(":")
    except KeyError:
        known = ", ".join(sorted(TUNERS))
        raise ValueError(f"unknown tuner {name!r}; choose one of: {known}") from None
    chosen = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    chosen.require()
    return chosen


def make_tuner(name: str, pipeline, **options) -> Tuner:
    return tuner_class(name)(pipeline, **options)
