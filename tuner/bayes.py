"""GP-based tuners: a scrambled Sobol warm-up, then the acquisition's maximizer.

The family differs only in its cost model, its cooling and whether it reuses
cached prefixes:

=========  ==================================  =======  ============
tuner      cost model                          cooling  memoization
=========  ==================================  =======  ============
ei         none                                –        –
eips       one GP on total cost                η = 1    –
carbo      one GP on total cost                yes      –
ms-carbo   one GP per stage (with upstream)    yes      –
eeipu      one GP per stage (with upstream)    yes      yes
=========  ==================================  =======  ============
"""

from __future__ import annotations

import torch
from torch.quasirandom import SobolEngine

from memotune.pipelines import TrialRecord

from .acquisition import CostCooledLogEI
from .base import Config, Proposal, Tuner
from .budget import COST, PHASE, WARMUP, Budget, ProposalCharge, trial_cost
from .cached_posterior import CachedPosteriorGP
from .encoding import SpaceEncoder
from .models import CostModel, GPFitter, condition_on_believed
from .observations import Observations
from .optimize import AcquisitionFactory, Candidate, Prefix, optimize_over_prefixes

#: The phase of a proposal chosen by the acquisition (after the warm-up).
BO = "bo"

#: How many recent proposals' charged seconds make the per-trial overhead the
#: cost models add (proposal time grows slowly with the observations).
OVERHEAD_WINDOW = 10


class GPTuner(Tuner):
    """Expected improvement (LogEI) on a GP of the objective; no costs."""

    name = "ei"
    cost_model: str | None = None  # None, "total" or "stages"
    cooling = False

    def __init__(
        self,
        pipeline,
        *,
        seed: int = 0,
        cache=None,
        study: str = "memotune",
        n_init: int = 10,
        raw_samples: int = 256,
        polish: int = 3,
        maxiter: int = 30,
        cost_samples: int = 256,
    ) -> None:
        super().__init__(pipeline, seed=seed, cache=cache, study=study)
        self.encoder = SpaceEncoder(pipeline)
        if self.encoder.dim == 0:
            raise ValueError(f"pipeline '{pipeline.name}' has no hyperparameters to tune")
        self.observations = Observations(pipeline, self.encoder)
        self.n_init = n_init
        self.raw_samples = raw_samples
        self.polish = polish
        self.maxiter = maxiter
        self.objective_fitter = GPFitter()
        self.costs = (
            CostModel(
                self.encoder, per_stage=self.cost_model == "stages", samples=cost_samples, seed=seed
            )
            if self.cost_model
            else None
        )
        self._spent_by_told = 0.0
        self._warmup_spent: float | None = None
        self._proposal_charges: list[float] = []  # charged seconds of recent BO proposals
        self._queue: list[Proposal] = []  # the rest of a batch chosen by one optimization
        self._refitted = False  # whether the last proposal re-optimized hyperparameters

    def _observe(self, record: TrialRecord) -> None:
        self.observations.add(record)
        charge = ProposalCharge.from_record(record)
        self._spent_by_told += trial_cost(record)
        if charge.phase == BO:
            recent = self._proposal_charges[-(OVERHEAD_WINDOW - 1) :]
            self._proposal_charges = [*recent, charge.charged]
        if len(self.observations) == self.n_init:
            self._warmup_spent = self._spent_by_told

    def _propose(self, pending: list[Config], budget: Budget) -> Proposal:
        index = self.told + len(pending)
        data = self.observations.objective_data()
        if index < self.n_init or data is None:
            return self._warmup(index, pending)
        queued = self._dequeue(pending)
        if queued is not None:
            return queued
        X, Y = data[0], self._warp(data[1])
        may_refit = self._may_refit(budget)
        model = self.objective_fitter.fit(X, Y, may_refit=may_refit)
        self._refitted = self.objective_fitter.refitted
        pending_rows = self.encoder.encode_many([self.pipeline.validate(c) for c in pending])
        model = CachedPosteriorGP(
            condition_on_believed(self.objective_fitter, model, X, Y, pending_rows)
        )
        if self.costs is not None:
            self.costs.fit(self.observations, may_refit=self._may_refit_costs(budget))
            self._refitted |= self.costs.refitted
            self.costs.overhead = self._overhead()
        make_acquisition, info = self._acquisition(model, X, Y, budget)
        candidates = optimize_over_prefixes(
            make_acquisition,
            self.prefixes(pending),
            self.encoder,
            seed=self.seed * 100_003 + index,
            raw_samples=self.raw_samples,
            polish=self.polish,
            maxiter=self.maxiter,
        )
        chosen = self._choose(candidates, pending, model, budget)
        if not chosen:  # every candidate was run already: explore instead
            return self._warmup(index, pending)
        candidate, config = chosen[0]
        info = {**info, PHASE: BO}
        self._queue = [Proposal(c, {**info, **_chosen(k)}) for k, c in chosen[1:]]
        return Proposal(config, {**info, **_chosen(candidate)})

    def _warp(self, Y: torch.Tensor) -> torch.Tensor:
        """The objective values as the GP models them (here: as observed)."""
        return Y

    def _overhead(self) -> float:
        """What every trial costs besides its stages: the tuner's charged seconds per
        proposal, on average over the recent ones."""
        charges = self._proposal_charges
        return sum(charges) / len(charges) if charges else 0.0

    def _may_refit(self, budget: Budget) -> bool:
        """Whether this proposal may re-optimize GP hyperparameters that are due on the
        refit schedule (here: always)."""
        return True

    def _may_refit_costs(self, budget: Budget) -> bool:
        """Whether this proposal may re-optimize the cost GPs' hyperparameters that are
        due on their refit schedule (here: as for the objective's)."""
        return self._may_refit(budget)

    def _acquisition(
        self, model: CachedPosteriorGP, X: torch.Tensor, Y: torch.Tensor, budget: Budget
    ) -> tuple[AcquisitionFactory, dict]:
        """The acquisition to maximize (a factory over per-candidate prefix depths and
        cached costs) and what to record about it."""
        eta = self.eta(budget)
        best_f = float(Y.max())

        def make_acquisition(depth: torch.Tensor, cached: torch.Tensor) -> CostCooledLogEI:
            return CostCooledLogEI(model, best_f, self.costs, eta, depth, cached)

        return make_acquisition, {"eta": eta}

    def _choose(
        self,
        candidates: list[Candidate],
        pending: list[Config],
        model: CachedPosteriorGP,
        budget: Budget,
    ) -> list[tuple[Candidate, Config]]:
        """The configurations to propose, best first: here the best one not yet run."""
        chosen = self._first_new(candidates, pending)
        return [chosen] if chosen is not None else []

    def eta(self, budget: Budget) -> float:
        """Cost cooling: η falls from 1 after the warm-up to 0 when the budget is spent."""
        if self.costs is None:
            return 0.0
        if not self.cooling:
            return 1.0
        if budget.kind == COST:
            start = self._warmup_spent if self._warmup_spent is not None else budget.spent
            left, span = budget.total - budget.spent, budget.total - start
        else:
            left, span = budget.total - self.told, budget.total - self.n_init
        return float(min(1.0, max(0.0, left / span))) if span > 0 else 0.0

    def prefixes(self, pending: list[Config]) -> list[Prefix]:
        """Where candidates may start from: only the empty prefix (no reuse)."""
        return [Prefix(depth=0)]

    def _warmup(self, index: int, pending: list[Config]) -> Proposal:
        """The index-th point of a scrambled Sobol design (skipping ones already run)."""
        engine = SobolEngine(self.encoder.dim, scramble=True, seed=self.seed)
        engine.fast_forward(index)
        taken = {self._key(c) for c in pending}
        for _ in range(1000):
            config = self.encoder.decode(engine.draw(1, dtype=torch.float64)[0])
            if self._is_new(config, taken):
                break
        return Proposal(config, {PHASE: WARMUP})

    def _dequeue(self, pending: list[Config]) -> Proposal | None:
        """The next queued proposal of the last batch that is still new, if any."""
        taken = {self._key(c) for c in pending}
        while self._queue:
            proposal = self._queue.pop(0)
            if self._is_new(proposal.config, taken):
                proposal.info["queued"] = True
                return proposal
        return None

    def _first_new(
        self, candidates: list[Candidate], pending: list[Config]
    ) -> tuple[Candidate, Config] | None:
        taken = {self._key(c) for c in pending}
        for candidate in candidates:
            config = self._config_of(candidate)
            if self._is_new(config, taken):
                return candidate, config
        return None

    def _is_new(self, config: Config, taken: set[str]) -> bool:
        """Neither observed nor among ``taken`` (the keys of running trials)."""
        return not self.observations.seen(config) and self._key(config) not in taken

    def _config_of(self, candidate: Candidate) -> Config:
        config = self.encoder.decode(candidate.row)
        config.update(candidate.prefix.config)  # a reused prefix is exact, never decoded
        return config

    def _key(self, config: Config) -> str:
        return self.pipeline.keys(config)[-1]


def _chosen(candidate: Candidate) -> dict:
    """What a proposal records of the candidate it is: its acquisition value, the cached
    stages it reuses and (a continued training run) the checkpoint's step."""
    info = {"acquisition": candidate.value, "prefix_depth": candidate.prefix.depth}
    if candidate.prefix.resumes is not None:
        info["resumes_from"] = candidate.prefix.resumes
    return info


class EIPS(GPTuner):
    """EI per second: EI · E[1/C] with one GP on the total cost, no cooling."""

    name = "eips"
    cost_model = "total"


class CArBO(GPTuner):
    """Cost-aware BO (Lee et al. 2020): EIPS with the cost term cooled as budget is spent."""

    name = "carbo"
    cost_model = "total"
    cooling = True


class MultiStageCArBO(GPTuner):
    """CArBO with one cost GP per stage, but no reuse of cached prefixes."""

    name = "ms-carbo"
    cost_model = "stages"
    cooling = True
