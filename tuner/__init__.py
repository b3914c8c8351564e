"""Tuners (ask/tell), the study loop around them, and its budget accounting."""

from .base import Proposal, Tuner
from .budget import COST, PHASE, TRIALS, WARMUP, Budget, ProposalCharge, trial_cost
from .registry import TUNERS, make_tuner, tuner_class, tuner_spec

__all__ = [
    "COST",
    "PHASE",
    "TRIALS",
    "TUNERS",
    "WARMUP",
    "Budget",
    "Proposal",
    "ProposalCharge",
    "Tuner",
    "make_tuner",
    "trial_cost",
    "tuner_class",
    "tuner_spec",
]
