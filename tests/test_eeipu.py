import math

import pytest
import torch

from memotune import Float, Output, Pipeline, StageCache, run, stage
from memotune.stages.synthetic import stage_cost, synthetic_pipeline
from memotune.tuner.budget import COST, TRIALS, Budget
from memotune.tuner.eeipu import EEIPU, pin_owner
from memotune.tuner.study import Study


@stage(space={"x": Float(0.0, 1.0)}, version="1")
def expensive(inputs, x):
    return Output(x, cost=10.0)


@stage(space={"y": Float(0.0, 1.0)}, version="1")
def cheap(x, y):
    return Output({"objective": -((x - 0.9) ** 2) - (y - 0.5) ** 2}, cost=0.5)


# Cached prefixes all sit far from the optimum x = 0.9; the odd float checks exact reuse.
XS = [0.1, 0.2, 0.30000000000000004]


@pytest.fixture
def informed_eeipu():
    pipe = Pipeline([expensive, cheap], cost_unit="units", hit_cost=0.1)
    cache = StageCache("cache")
    tuner = EEIPU(pipe, seed=0, cache=cache, n_init=6, study="test")
    for x in XS:
        for y in (0.2, 0.8):
            tuner.tell(run(pipe, {"expensive": {"x": x}, "cheap": {"y": y}}, cache=cache))
    return tuner, cache


def spent_budget(fraction: float) -> Budget:
    budget = Budget(COST, 100.0, charge_tuner=False)
    budget.compute = 3 * 10.5 + 3 * 0.6 + (100 - 33.3) * fraction  # what the six trials cost
    return budget


def test_eeipu_reuses_cheap_cached_prefixes_while_eta_is_high(informed_eeipu):
    tuner, _ = informed_eeipu
    proposal = tuner.ask([], spent_budget(0.0))
    assert proposal.info["eta"] == pytest.approx(1.0)
    assert proposal.info["prefix_depth"] == 1
    assert proposal.config["expensive"]["x"] in XS  # exact, never a normalize round trip
    assert any(
        proposal.config["expensive"]["x"] is x or proposal.config["expensive"]["x"] == x for x in XS
    )


def test_eeipu_stops_favouring_prefixes_once_eta_has_cooled(informed_eeipu):
    tuner, _ = informed_eeipu
    proposal = tuner.ask([], spent_budget(1.0))
    assert proposal.info["eta"] == 0.0
    assert proposal.info["prefix_depth"] == 0
    assert proposal.config["expensive"]["x"] > max(XS)  # heads for the better region


def test_reused_prefix_values_are_bit_exact(informed_eeipu):
    tuner, cache = informed_eeipu
    reused = tuner.ask([], spent_budget(0.0)).config["expensive"]["x"]
    cached = {
        p.config["expensive"]["x"] for p in cache.prefixes(tuner.pipeline.lineages) if p.depth == 0
    }
    assert reused in cached and math.copysign(1, reused) == 1
    assert repr(reused) in {repr(x) for x in cached}


def test_running_trials_count_as_about_to_be_cached(informed_eeipu):
    tuner, _ = informed_eeipu
    pending = {"expensive": {"x": 0.55}, "cheap": {"y": 0.5}}
    prefixes = tuner.prefixes([pending])
    assert any(p.depth == 1 and p.config["expensive"]["x"] == 0.55 for p in prefixes)


def test_the_best_prefixes_are_pinned_against_eviction(informed_eeipu):
    tuner, cache = informed_eeipu
    best = max(tuner.observations.items, key=lambda o: o.value)
    assert best.keys[0] in cache.index.pinned(pin_owner("test"))
    cache.evict(0)
    assert cache.info(best.keys[0]) is not None


def test_cost_gps_learn_true_compute_costs_never_hit_load_times():
    pipe = synthetic_pipeline("synthetic-3")
    cache = StageCache("cache")
    result = Study(
        pipe,
        name="costs",
        budget=Budget(TRIALS, 16),
        tuner="eeipu",
        seed=1,
        storage="studies",
        cache=cache,
        tuner_options={"n_init": 6},
    ).run()
    hits = [r for r in result.trials if r.reused_depth > 0]
    assert len(hits) >= 5  # EEIPU did reuse prefixes
    for record in hits:
        for index, s in enumerate(record.stages[: record.reused_depth]):
            assert s.charged == pytest.approx(0.1)  # the budget paid ε …
            x = list(record.config[s.stage].values())
            assert s.cost == pytest.approx(stage_cost(x, index))  # … the record keeps the truth

    tuner = EEIPU(pipe, seed=1, cache=cache, n_init=6)
    for record in result.trials:
        tuner.tell(record)
    tuner.costs.fit(tuner.observations)
    for k, model in enumerate(tuner.costs.models):
        gp = model.model
        transform = gp.outcome_transform
        targets = gp.train_targets * transform.stdvs.squeeze() + transform.means.squeeze()
        truth = sorted(
            {
                round(math.log(stage_cost(list(r.config[pipe.stages[k].name].values()), k)), 9)
                for r in result.trials
            }
        )
        assert sorted(round(float(t), 9) for t in targets) == truth
        assert all(t > math.log(0.5) for t in targets)  # no ε (0.1) or load time among them


def test_a_charged_proposal_time_narrows_what_a_cached_prefix_saves(informed_eeipu):
    """A trial reusing the expensive stage costs ~0.6 instead of ~10.5; when each
    proposal costs 5 more (charged), reuse saves a factor of ~3, not ~17."""
    tuner, _ = informed_eeipu
    costs = tuner.costs
    costs.fit(tuner.observations)
    x = torch.tensor([[[0.2, 0.5]], [[0.2, 0.5]]], dtype=torch.float64)
    depth = torch.tensor([1, 0])
    cached = torch.tensor([0.1, 0.0], dtype=torch.float64)

    def saving() -> float:
        log_inverse = costs.log_expected_inverse_cost(x, depth, cached)
        return math.exp(float(log_inverse[0] - log_inverse[1]))

    assert 10 < saving() < 30
    costs.overhead = 5.0
    assert 2 < saving() < 4
