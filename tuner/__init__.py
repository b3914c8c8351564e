"""Tuners (ask/tell), the study loop around them, and the comparison harness."""

from .base import Proposal, Tuner
from .budget import COST, TRIALS, Budget
from .registry import TUNERS, make_tuner, tuner_class

__all__ = ["COST", "TRIALS", "TUNERS", "Budget", "Proposal", "Tuner", "make_tuner", "tuner_class"]
