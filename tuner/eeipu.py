"""EEIPU: expected-expected improvement per unit cost, aware of cached prefixes.

After Abdelaziz et al., "Memoization-Aware Bayesian Optimization for AI
Pipelines with Unknown Costs" (arXiv 2411.03731), with these differences
from the published code:

- LogEI, in log space: ``log α = logEI(x) + η · log E[1/C(x, δ)]``;
- stage k's cost GP sees the hyperparameters of stages 0..k, not only its own;
- cost GPs learn true compute costs (a hit's entry carries them), never a
  cache hit's load time;
- cached stages cost their load time (or ε) in E[1/C], not a sample;
- search within the declared bounds, not the box of what was observed;
- a scrambled Sobol warm-up;
- prefixes come from the cache's index (exact values, never a
  normalize/unnormalize round trip), plus those that running trials are
  computing, ranked by the best objective reached through them;
- all prefixes are screened in one batch and the best few polished together.
"""

from __future__ import annotations

from memotune.pipelines import SpaceError, TrialRecord

from .base import Config
from .bayes import GPTuner
from .optimize import Prefix


def pin_owner(study: str) -> str:
    """Whose pins EEIPU's are: the study it proposes for (``memotune cache unpin --study``
    releases them)."""
    return f"study:{study}"


class EEIPU(GPTuner):
    name = "eeipu"
    cost_model = "stages"
    cooling = True

    def __init__(self, pipeline, *, max_prefixes: int = 32, pin_best: int = 5, **options) -> None:
        super().__init__(pipeline, **options)
        self.max_prefixes = max_prefixes
        self.pin_best = pin_best
        self._pinned: set[str] = set()

    def prefixes(self, pending: list[Config]) -> list[Prefix]:
        """The empty prefix, then the best cached (or being-computed) prefixes, ranked by
        the best objective reached through them."""
        scores = self.observations.best_through_prefixes()
        found: dict[str, tuple[int, Config, float]] = {}  # key → depth, config, reuse cost
        for cached in self.cache.prefixes(self.pipeline.lineages) if self.cache else []:
            depth = cached.depth + 1
            if self._has_free_columns(depth):
                reuse = self._reuse_cost(depth, cached.load_seconds, cached.size_bytes)
                found[cached.key] = (depth, cached.config, reuse)
        n_stages = len(self.pipeline.stages)
        for config in pending:  # a running trial is about to cache its prefixes
            config = self.pipeline.validate(config)
            for depth, key in enumerate(self.pipeline.keys(config)[: n_stages - 1], start=1):
                if key not in found and self._has_free_columns(depth):
                    found[key] = (depth, config, self._reuse_cost(depth, None, 0))
        ranked = sorted(
            found,
            key=lambda k: (k in scores, scores.get(k, 0.0), found[k][0]),
            reverse=True,
        )
        chosen = [Prefix(depth=0)]
        for key in ranked:
            depth, config, reuse = found[key]
            config = self._valid_prefix(config, depth)
            if config is not None:
                chosen.append(Prefix(depth, config, reuse, key, scores.get(key)))
            if len(chosen) > self.max_prefixes:
                break
        return chosen

    def _observe(self, record: TrialRecord) -> None:
        super()._observe(record)
        if self.cache is not None:
            self._pin_best_prefixes()

    def _pin_best_prefixes(self) -> None:
        """Keep the prefixes of the best configurations safe from eviction."""
        scored = [o for o in self.observations.items if o.value is not None]
        best = sorted(scored, key=lambda o: o.value, reverse=True)[: self.pin_best]
        keys = {key for o in best for key in o.keys[:-1]}
        if keys == self._pinned:
            return
        owner = pin_owner(self.study)
        self.cache.pin(sorted(keys - self._pinned), owner=owner)
        self.cache.unpin(owner, sorted(self._pinned - keys))
        self._pinned = keys

    def _reuse_cost(self, depth: int, load_seconds: float | None, size_bytes: int) -> float:
        """What reusing ``depth`` cached stages costs: ε per stage when the pipeline
        fixes a hit's cost, else the measured (or, until measured, estimated) load time."""
        if self.pipeline.hit_cost is not None:
            return depth * self.pipeline.hit_cost
        if load_seconds is not None:
            return load_seconds
        return size_bytes / 1e9 + 1e-3

    def _has_free_columns(self, depth: int) -> bool:
        return self.encoder.prefix_end(depth) < self.encoder.dim

    def _valid_prefix(self, config: Config, depth: int) -> Config | None:
        """The prefix's stage params if they still fit the search space (it may have changed)."""
        stages = self.pipeline.stages[:depth]
        try:
            return {
                s.name: {
                    name: param.validate(config[s.name][name], s.name)
                    for name, param in s.space.items()
                }
                for s in stages
            }
        except (KeyError, SpaceError):
            return None
