import pytest

from memotune import Float, Pipeline, stage, tune
from memotune.pipelines import StageRecord, TrialRecord, best_trial
from memotune.stages.synthetic import synthetic_pipeline
from memotune.tuner.budget import COST, TRIALS, Budget, ProposalCharge, trial_cost


@stage(space={"x": Float(0.0, 1.0)})
def square(inputs, x):
    return {"objective": x * x}


def record(objective, *, status="completed", charged=1.0, info=None, trial_id=0):
    return TrialRecord(
        config={"square": {"x": 0.5}},
        status=status,
        objective=objective,
        metrics={} if objective is None else {"objective": objective},
        stages=[StageRecord("square", "k", cost=charged, charged=charged)],
        trial_id=trial_id,
        info=info or {},
    )


def test_a_proposal_charge_round_trips_through_a_trials_info():
    charge = ProposalCharge(seconds=0.25, charged=0.25, phase="warmup")
    done = record(1.0, info={"acquisition": -2.0, **charge.to_info()})
    assert ProposalCharge.from_record(done) == charge
    assert charge.proposed and charge.warmup
    assert ProposalCharge.from_record(record(1.0)) == ProposalCharge()  # no tuner proposed it
    assert not ProposalCharge().proposed
    assert trial_cost(done) == pytest.approx(1.25)


def test_the_budget_for_a_pipeline_charges_the_tuner_only_in_seconds():
    seconds = Budget.for_pipeline(Pipeline([square]), budget=10)
    units = Budget.for_pipeline(synthetic_pipeline("synthetic-3"), budget=10)
    counted = Budget.for_pipeline(Pipeline([square]), trials=4)
    assert (seconds.kind, seconds.total, seconds.charge_tuner) == (COST, 10.0, True)
    assert (units.kind, units.charge_tuner) == (COST, False)
    assert (counted.kind, counted.total) == (TRIALS, 4.0)
    assert seconds.proposal(0.5, "bo") == ProposalCharge(0.5, 0.5, "bo")
    assert units.proposal(0.5, None) == ProposalCharge(0.5, 0.0, "ask")
    with pytest.raises(ValueError, match="either budget= .* or trials="):
        Budget.for_pipeline(Pipeline([square]), budget=1, trials=1)


def test_a_budget_charges_what_each_trial_recorded_and_replays_in_order():
    budget = Budget(COST, 10.0)
    charged = [record(0.1, info=ProposalCharge(0.5, 0.5, "bo").to_info()), record(0.2)]
    assert budget.charge_all(charged) == [1.5, 2.5]
    assert budget.summary()["tuner"] == 0.5 and budget.summary()["tuner_seconds"] == 0.5
    assert budget.fresh().spent == 0.0 and budget.spent == 2.5
    reported = Budget(COST, 10.0)  # seconds recorded but not charged (cost units)
    reported.charge(record(0.1, info=ProposalCharge(0.5, 0.0, "bo").to_info()))
    assert reported.spent == 1.0 and reported.tuner_seconds == 0.5


def test_the_best_trial_follows_the_direction_and_skips_failures_ties_go_to_the_first():
    records = [
        record(0.3, trial_id=0),
        record(None, status="failed", trial_id=1),
        record(0.7, trial_id=2),
        record(0.7, trial_id=3),
        record(0.1, trial_id=4),
    ]
    assert best_trial(records, maximize=True).trial_id == 2
    assert best_trial(records, maximize=False).trial_id == 4
    assert best_trial(records[1:2], maximize=True) is None


def test_a_study_stamps_every_trial_with_its_proposal_charge():
    result = tune(
        Pipeline([square]),
        tuner="random",
        budget=0.05,
        study="charged",
        progress=False,
        tracking=False,
        runner="local",
    )
    charges = [ProposalCharge.from_record(r) for r in result.trials]
    assert all(c.phase == "random" and c.charged == c.seconds > 0 for c in charges)
    assert result.budget["tuner"] == pytest.approx(sum(c.charged for c in charges))
    assert result.best_trial is best_trial(result.trials, maximize=True)
