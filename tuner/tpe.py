"""Optuna's TPE as a memotune tuner: a peer to compare with (``pip install memotune[bench]``).

Each stage parameter is an Optuna distribution named ``stage.param``.
Running trials stay "running" in Optuna's study, and the sampler's constant
liar keeps parallel proposals apart. Trials told without having been asked
(a resumed study) are added as finished trials.
"""

from __future__ import annotations

from typing import Any

from memotune.pipelines import Choice, Float, Int, Pipeline, TrialRecord, canonical_json

from .base import Config, Proposal, Tuner
from .budget import PHASE, Budget


class TPE(Tuner):
    name = "tpe"

    def __init__(self, pipeline: Pipeline, *, n_init: int = 10, **options: Any) -> None:
        super().__init__(pipeline, **options)
        optuna = self.require()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.distributions = {
            f"{stage}.{name}": _distribution(optuna, param)
            for stage, name, param in pipeline.parameters()
        }
        if not self.distributions:
            raise ValueError(f"pipeline '{pipeline.name}' has no hyperparameters to tune")
        self.study = optuna.create_study(
            direction=pipeline.direction,
            sampler=optuna.samplers.TPESampler(
                seed=self.seed, n_startup_trials=n_init, constant_liar=True
            ),
        )
        self._asked: dict[str, list[Any]] = {}  # canonical config → optuna trials running

    @classmethod
    def require(cls) -> Any:
        try:
            import optuna
        except ImportError:
            raise ValueError("tuner 'tpe' needs Optuna: pip install 'memotune[bench]'") from None
        return optuna

    def _propose(self, pending: list[Config], budget: Budget) -> Proposal:
        trial = self.study.ask(self.distributions)
        config: Config = {s.name: {} for s in self.pipeline.stages}
        for key, value in trial.params.items():
            stage, name = key.split(".", 1)
            config[stage][name] = value
        self._asked.setdefault(canonical_json(config), []).append(trial)
        return Proposal(config, {PHASE: "tpe"})

    def _observe(self, record: TrialRecord) -> None:
        config = self.pipeline.validate(record.config)
        value = record.objective if record.completed else None
        state = self._optuna.trial.TrialState
        waiting = self._asked.get(canonical_json(config))
        if waiting:
            trial = waiting.pop(0)
            if value is None:
                self.study.tell(trial, state=state.FAIL)
            else:
                self.study.tell(trial, value)
            return
        params = {
            f"{stage}.{name}": config[stage][name] for stage, name, _ in self.pipeline.parameters()
        }
        self.study.add_trial(
            self._optuna.trial.create_trial(
                params=params,
                distributions=self.distributions,
                value=value,
                state=state.COMPLETE if value is not None else state.FAIL,
            )
        )


def _distribution(optuna: Any, param: Any) -> Any:
    if isinstance(param, Float):
        return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log)
    if isinstance(param, Int):
        return optuna.distributions.IntDistribution(int(param.low), int(param.high), log=param.log)
    if isinstance(param, Choice):
        return optuna.distributions.CategoricalDistribution(list(param.options))
    raise TypeError(f"unknown parameter type {param!r}")
