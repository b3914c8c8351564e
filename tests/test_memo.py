"""The memo tuner: effort paid for by trial cost, no near-duplicates, noise-aware."""

import itertools
import random

import pytest
import torch
from scipy import stats

from memotune import Float, Output, Pipeline, StageCache, run, stage
from memotune.tuner.budget import COST, Budget
from memotune.tuner.effort import Effort
from memotune.tuner.encoding import SpaceEncoder
from memotune.tuner.memo import MemoTuner
from memotune.tuner.study import Study


def two_stage(cost: float, noise: float = 0.0) -> Pipeline:
    """A two-stage pipeline whose stages report ``cost`` seconds each (nothing sleeps)."""
    rng = random.Random(0)

    @stage(space={"x": Float(0.0, 1.0)}, version="1", name="first")
    def first(inputs, x):
        return Output(x, cost=cost)

    @stage(space={"y": Float(0.0, 1.0, log=False)}, version="1", name="second")
    def second(x, y):
        value = -((x - 0.7) ** 2) - (y - 0.3) ** 2 + noise * rng.gauss(0.0, 1.0)
        return Output({"objective": value}, cost=cost)

    return Pipeline([first, second], name=f"two-stage-{cost}")


def study(tmp_path, pipeline: Pipeline, budget: float, name: str = "s"):
    return Study(
        pipeline,
        name=name,
        budget=Budget(COST, budget),
        tuner="memo",
        seed=0,
        storage=tmp_path / "studies",
        cache=StageCache(tmp_path / "cache"),
    ).run()


def test_effort_batches_more_as_trials_get_cheaper():
    sizes = []
    for trial_cost in (100.0, 1.0, 0.05, 0.001):
        effort = Effort(target_share=0.05, max_batch=16)
        for _ in range(5):
            effort.observe_trial(trial_cost)
            effort.observe_proposal(0.2, refitted=False)
        sizes.append(effort.batch_size(charged=True))
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 16
    assert Effort().batch_size(charged=False) == 1  # uncharged time: one per fit


def test_a_refit_the_account_could_not_pay_is_paid_back_by_larger_batches():
    effort = Effort(target_share=0.05, max_batch=64)
    for _ in range(5):
        effort.observe_trial(1.0)
        effort.observe_proposal(0.02, refitted=False)
    settled = effort.batch_size(charged=True)
    effort.observe_proposal(1.0, refitted=True)  # owed: about 1 s
    assert effort.batch_size(charged=True) > 5 * settled
    for _ in range(effort.batch_size(charged=True)):
        effort.observe_trial(1.0)
    assert effort.balance >= 0 and effort.batch_size(charged=True) == settled


def test_trials_earning_at_a_floor_never_buy_more_than_the_max_share():
    """Cheap trials earn as if they cost the floor, but the thinking they buy stays within
    ``max_share`` of what they were truly charged."""
    effort = Effort(target_share=0.05, max_share=0.08)
    for _ in range(100):
        effort.observe_trial(0.1, floor=1.0)  # 10 s charged in all
    assert effort.earned == pytest.approx(100 * 0.05 / 0.95)  # 5.3 s earned at the floor
    assert effort.balance == pytest.approx(10 * 0.08 / 0.92)  # 0.87 s: 8% of 10.87 s
    effort.observe_proposal(effort.balance, refitted=False)
    assert effort.spent / (effort.spent + effort.charged) == pytest.approx(0.08)
    assert effort.batch_size(charged=True) > 1  # nothing left: the next fit proposes a batch
    unfloored = Effort(target_share=0.05, max_share=0.08)
    for _ in range(100):
        unfloored.observe_trial(0.1)
    assert unfloored.balance == pytest.approx(10 * 0.05 / 0.95)  # the target binds


def test_refits_wait_until_trials_have_paid_for_them():
    effort = Effort(target_share=0.05)
    assert effort.may_refit(charged=True)  # a refit's cost is not known yet
    effort.observe_proposal(1.0, refitted=True)
    assert not effort.may_refit(charged=True)  # 1 s of thinking owed, nothing earned
    for _ in range(18):
        effort.observe_trial(1.0)  # each trial earns 0.05/0.95 s
    assert not effort.may_refit(charged=True)
    for _ in range(22):
        effort.observe_trial(1.0)
    assert effort.may_refit(charged=True)
    assert effort.may_refit(charged=False)  # where the tuner's time is free: always


def test_a_proposal_costs_less_per_trial_when_trials_are_cheap(tmp_path):
    """With trials that cost next to nothing, one fit serves a batch of proposals; with
    dear trials every proposal gets its own fit (and a wider search)."""
    cheap = study(tmp_path / "cheap", two_stage(0.001), budget=15.0)
    dear = study(tmp_path / "dear", two_stage(60.0), budget=2000.0)

    def bo(result):
        return [r for r in result.trials if r.info.get("phase") == "bo"]

    assert any(r.info.get("queued") for r in bo(cheap))
    assert max(r.info.get("batch", 1) for r in bo(cheap)) > 1
    assert not any(r.info.get("queued") for r in bo(dear))

    def per_trial(result):
        return sum(r.info["tuner_seconds"] for r in bo(result)) / len(bo(result))

    assert per_trial(cheap) < per_trial(dear)


def test_hyperparameters_are_refitted_as_data_grows_even_when_no_refit_is_paid_for(tmp_path):
    """Trials that cost next to nothing never pay for a refit; the GP is still refitted
    each time the data has grown by half, not left with the warm-up's hyperparameters."""
    result = study(tmp_path, two_stage(0.001), budget=15.0)
    sizes = [
        r.trial_id
        for r in result.trials
        if r.info.get("phase") == "bo" and r.info.get("refit") and not r.info.get("queued")
    ]
    assert len(result.trials) >= 40
    assert len(sizes) >= 3, sizes
    assert all(later >= 1.4 * earlier for earlier, later in itertools.pairwise(sizes)), sizes


def test_no_proposal_repeats_an_observed_configuration_within_the_noise(tmp_path):
    pipe = two_stage(1.0, noise=0.05)
    result = study(tmp_path, pipe, budget=60.0)
    encoder = SpaceEncoder(pipe)
    rows = torch.stack([encoder.encode(r.config) for r in result.trials])
    closest = min(float((a - b).norm()) for a, b in itertools.combinations(rows, 2))
    assert len(result.trials) >= 25
    assert closest > 1e-3


def test_a_candidate_next_to_an_observed_one_is_not_chosen(tmp_path):
    pipe = two_stage(1.0, noise=0.05)
    cache = StageCache(tmp_path / "cache")
    tuner = MemoTuner(pipe, seed=0, cache=cache, n_init=4, study="test")
    for x, y in [(0.1, 0.1), (0.3, 0.9), (0.7, 0.3), (0.9, 0.6), (0.6, 0.35)]:
        tuner.tell(run(pipe, {"first": {"x": x}, "second": {"y": y}}, cache=cache))
    budget = Budget(COST, 100.0)
    proposal = tuner.ask([], budget)
    twin = {"first": {"x": 0.7}, "second": {"y": 0.3 + 1e-7}}
    row = tuner.encoder.encode(twin)
    X, Y = tuner.observations.objective_data()
    model = tuner.objective_fitter.build(X, Y)
    from memotune.tuner.cached_posterior import CachedPosteriorGP
    from memotune.tuner.optimize import Candidate, Prefix

    cached = CachedPosteriorGP(model)
    tuner._batch = 2
    fresh = Candidate(torch.tensor([0.2, 0.8], dtype=torch.float64), Prefix(0), 0.0)
    chosen = tuner._choose([Candidate(row, Prefix(0), 1.0), fresh], [], cached, budget)
    assert [c for c, _ in chosen] == [fresh]
    assert proposal.config != twin


@pytest.mark.parametrize("noise", [0.3])
def test_the_incumbent_is_the_best_posterior_mean_not_the_luckiest_draw(tmp_path, noise):
    pipe = two_stage(1.0, noise=noise)
    cache = StageCache(tmp_path / "cache")
    tuner = MemoTuner(pipe, seed=0, cache=cache, n_init=4, study="test")
    for x, y in [(0.1, 0.1), (0.3, 0.9), (0.7, 0.3), (0.9, 0.6), (0.5, 0.5), (0.2, 0.4)]:
        tuner.tell(run(pipe, {"first": {"x": x}, "second": {"y": y}}, cache=cache))
    proposal = tuner.ask([], Budget(COST, 100.0))
    _, values = tuner.observations.objective_data()
    best_draw = float(tuner._warp(values).max())  # in the units the GP models
    assert proposal.info["incumbent"] < best_draw


def test_a_batch_builds_at_most_once_on_each_first_stage_output(tmp_path):
    """Cheap tweaks of the last stages of one upstream setting do not fill a batch."""

    @stage(space={"x": Float(0.0, 1.0)}, version="1", name="first")
    def first(inputs, x):
        return Output(x, cost=5.0)

    @stage(space={"y": Float(0.0, 1.0)}, version="1", name="middle")
    def middle(x, y):
        return Output(x + y, cost=1.0)

    @stage(space={"z": Float(0.0, 1.0)}, version="1", name="last")
    def last(s, z):
        return Output({"objective": -((s - 1.0) ** 2) - (z - 0.5) ** 2}, cost=0.1)

    pipe = Pipeline([first, middle, last], name="three-stage")
    cache = StageCache(tmp_path / "cache")
    tuner = MemoTuner(pipe, seed=0, cache=cache, n_init=4, study="test")
    seen = [(0.1, 0.2, 0.3), (0.5, 0.1, 0.9), (0.5, 0.9, 0.1), (0.9, 0.5, 0.5), (0.2, 0.7, 0.8)]
    for x, y, z in seen:
        tuner.tell(
            run(pipe, {"first": {"x": x}, "middle": {"y": y}, "last": {"z": z}}, cache=cache)
        )
    X, Y = tuner.observations.objective_data()
    from memotune.tuner.cached_posterior import CachedPosteriorGP
    from memotune.tuner.optimize import Candidate, Prefix

    model = CachedPosteriorGP(tuner.objective_fitter.fit(X, Y))

    def on(prefix_of, depth, z):
        x, y, _ = prefix_of
        config = {"first": {"x": x}, "middle": {"y": y}}
        prefix = Prefix(depth, {k: config[k] for k in list(config)[:depth]})
        row = tuner.encoder.encode({**config, "last": {"z": z}})
        return Candidate(row, prefix, 1.0)

    tweaks = [on(seen[1], 2, 0.45), on(seen[2], 2, 0.55), on(seen[1], 1, 0.6)]  # all on x=0.5
    elsewhere = on(seen[3], 2, 0.4)
    tuner._batch = 4
    chosen = tuner._choose([*tweaks, elsewhere], [], model, Budget(COST, 100.0))
    assert [c for c, _ in chosen] == [tweaks[0], elsewhere]


def test_the_gp_sees_a_skewed_objective_warped_in_order():
    """Losses spread over orders of magnitude (log-normal) reach the GP far less skewed,
    in the same order."""
    tuner = MemoTuner(two_stage(1.0), seed=0)
    generator = torch.Generator().manual_seed(0)
    values = -torch.exp(1.5 * torch.randn(30, 1, generator=generator, dtype=torch.float64))
    warped = tuner._warp(values).squeeze(-1)
    assert torch.equal(warped.argsort(), values.squeeze(-1).argsort())
    assert abs(float(stats.skew(warped))) < 0.5 * abs(float(stats.skew(values.squeeze(-1))))
    constant = torch.ones(3, 1, dtype=torch.float64)
    assert torch.equal(tuner._warp(constant), constant)


def test_the_warp_keeps_the_good_half_and_pulls_in_the_bad_tail():
    """From the median up the GP sees the values as observed, up to shift and scale (so
    expected improvement there is in the objective's units); below it the far-off
    losses are pulled in."""
    tuner = MemoTuner(two_stage(1.0), seed=0)
    generator = torch.Generator().manual_seed(1)
    values = -torch.exp(1.5 * torch.randn(30, generator=generator, dtype=torch.float64))
    warped = tuner._warp(values.unsqueeze(-1)).squeeze(-1)
    good = values >= values.median()

    def span(x, where):
        return float(x[where].max() - x[where].min())

    slope = span(warped, good) / span(values, good)
    low = values[good].min()
    assert torch.allclose(warped[good], warped[good].min() + slope * (values[good] - low))
    assert span(warped, ~good) / span(warped, good) < 0.5 * span(values, ~good) / span(values, good)
