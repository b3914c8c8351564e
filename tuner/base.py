"""The ask/tell interface every tuner implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from memotune.cache import StageCache
from memotune.pipelines import Pipeline, TrialRecord

from .budget import Budget

Config = dict[str, dict[str, Any]]


@dataclass
class Proposal:
    """A configuration to run, and what the tuner knew when it chose it."""

    config: Config
    info: dict[str, Any] = field(default_factory=dict)


class Tuner(ABC):
    """Proposes configurations (``ask``) and learns from finished trials (``tell``).

    ``pending`` holds the configurations of trials still running, so that
    parallel proposals differ. A tuner's state must follow from the trials it
    was told, in order: a resumed study rebuilds it by telling them again.
    ``study`` names the study it proposes for (EEIPU pins cache entries for it).
    """

    name = "tuner"

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        seed: int = 0,
        cache: StageCache | None = None,
        study: str = "memotune",
    ) -> None:
        self.pipeline = pipeline
        self.seed = seed
        self.cache = cache
        self.study = study
        self.told = 0
        self.asked = 0

    @classmethod
    def require(cls) -> Any:
        """Check that what the tuner needs is installed; raise ``ValueError`` saying what
        to install if not (most tuners need nothing more)."""
        return None

    def ask(self, pending: Sequence[Config], budget: Budget) -> Proposal:
        proposal = self._propose(list(pending), budget)
        proposal.info.setdefault("tuner", self.name)
        self.asked += 1
        return proposal

    def tell(self, record: TrialRecord) -> None:
        self._observe(record)
        self.told += 1

    @abstractmethod
    def _propose(self, pending: list[Config], budget: Budget) -> Proposal: ...

    def _observe(self, record: TrialRecord) -> None:  # noqa: B027 - optional hook
        """Learn from a finished trial (random search learns nothing)."""
