"""Tuners by name."""

from __future__ import annotations

from .base import Tuner
from .bayes import EIPS, CArBO, GPTuner, MultiStageCArBO
from .eeipu import EEIPU
from .random_search import RandomSearch
from .tpe import TPE

TUNERS: dict[str, type[Tuner]] = {
    "eeipu": EEIPU,
    "ei": GPTuner,
    "eips": EIPS,
    "carbo": CArBO,
    "ms-carbo": MultiStageCArBO,
    "random": RandomSearch,
    "tpe": TPE,
}


def tuner_class(name: str) -> type[Tuner]:
    try:
        chosen = TUNERS[name]
    except KeyError:
        known = ", ".join(sorted(TUNERS))
        raise ValueError(f"unknown tuner {name!r}; choose one of: {known}") from None
    chosen.require()
    return chosen


def make_tuner(name: str, pipeline, **options) -> Tuner:
    return tuner_class(name)(pipeline, **options)
