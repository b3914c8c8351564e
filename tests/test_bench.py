"""The comparison harness: test-split scores, the paper's gain, paired statistics and the
anytime curves (in-process, on small pipelines)."""

import functools

import pytest

from memotune import Float, Pipeline, stage
from memotune.bench import (
    RunResult,
    anytime_curves,
    paired,
    relative_gain,
    run_one,
    summarize,
    warmup_length,
    wilcoxon_p,
)
from memotune.pipelines import TrialRecord
from memotune.stages.synthetic import synthetic_pipeline
from memotune.tuner.budget import ProposalCharge
from memotune.tuner.random_search import RandomSearch

TOLD: list[TrialRecord] = []


class Recording(RandomSearch):
    """Random search that keeps every record the study tells it."""

    def _observe(self, record):
        TOLD.append(record)


@stage(space={"x": Float(0.0, 1.0)})
def fit(inputs, x):
    # validation peaks at x = 0.3, the held-out split at x = 0.6: the two disagree
    return {"val_loss": (x - 0.3) ** 2, "test_loss": (x - 0.6) ** 2 + 0.01}


def split_pipeline():
    return Pipeline([fit], objective="val_loss", direction="minimize", test_metric="test_loss")


def test_the_incumbent_is_rescored_on_the_test_metric_the_tuner_never_saw():
    TOLD.clear()
    run = run_one(split_pipeline, Recording, seed=0, budget=None, trials=12)
    assert len(TOLD) == 12
    assert all("test_loss" not in r.metrics for r in TOLD)
    assert all("test_loss" not in s.metrics for r in TOLD for s in r.stages)
    assert all("val_loss" in r.metrics for r in TOLD)
    incumbent = min(TOLD, key=lambda r: r.objective)  # chosen by the tuning objective
    x = incumbent.config["fit"]["x"]
    assert run.best == pytest.approx((x - 0.3) ** 2)
    assert run.test == pytest.approx((x - 0.6) ** 2 + 0.01)  # its test score, not the best test
    assert run.tuner.endswith("test_bench.py:Recording")
    assert run.curve[-1][1:] == (run.best, run.test)


def test_the_curve_holds_the_trial_that_crossed_the_budget_and_ends_at_the_tables_value():
    factory = functools.partial(synthetic_pipeline, "synthetic-3")
    runs = [run_one(factory, "random", seed, budget=60.0, trials=None) for seed in (0, 1)]
    for run in runs:
        spent = [point[0] for point in run.curve]
        assert spent[-1] >= 60.0 > spent[-2]  # the last trial crossed the line, and counts
        assert run.curve[-1][2] == run.test
    summary = summarize(
        runs, pipeline="synthetic-3", budget=60.0, trials=None, direction="maximize"
    )
    xs, means, _ = anytime_curves(summary)["random"]
    assert xs[-1] == max(run.curve[-1][0] for run in runs)
    assert means[-1] == pytest.approx(summary["tuners"]["random"]["test_mean"])


def fake_run(tuner, seed, test, *, best=None, warmup_best=None):
    best = test if best is None else best
    return RunResult(
        tuner=tuner,
        seed=seed,
        trials=20,
        failed=0,
        best=best,
        test=test,
        warmup=10,
        warmup_best=best if warmup_best is None else warmup_best,
        budget={"compute": 9.0, "cache_loads": 1.0, "tuner": 0.0},
        tuner_seconds=0.5,
        proposals=20,
    )


def test_paired_wins_ties_losses_and_wilcoxon_follow_the_direction():
    reference = [fake_run("ref", s, 1.0) for s in range(6)]
    better = [fake_run("peer", s, 2.0 + s) for s in range(6)]
    up = paired(better, reference, sign=1.0, reference="ref")
    assert (up["wins"], up["ties"], up["losses"], up["seeds"]) == (6, 0, 0, 6)
    assert up["p_value"] == pytest.approx(2 / 2**6)  # exact two-sided, every sign the same
    down = paired(better, reference, sign=-1.0, reference="ref")  # minimizing: all losses
    assert (down["wins"], down["losses"]) == (0, 6) and down["p_value"] == up["p_value"]
    same = paired(reference, reference, sign=1.0, reference="ref")
    assert (same["ties"], same["p_value"]) == (6, 1.0)
    assert paired(better[:1], reference, sign=1.0, reference="ref")["p_value"] is None
    assert paired(better, [], sign=1.0, reference="ref")["seeds"] == 0
    assert wilcoxon_p([]) is None and wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
    assert 0 < wilcoxon_p([1.0, -0.5, 2.0, 0.0, 3.0]) <= 1


def test_the_gain_since_warmup_is_relative_to_the_other_tuners_average():
    runs = [
        fake_run("a", 0, 5.0, warmup_best=1.0),  # gained 4
        fake_run("b", 0, 3.0, warmup_best=2.0),  # gained 1
        fake_run("c", 0, 6.0, warmup_best=3.0),  # gained 3
    ]
    summary = summarize(runs, pipeline="p", budget=None, trials=20, direction="maximize")
    rows = summary["tuners"]
    assert [rows[t]["gain_mean"] for t in "abc"] == [4.0, 1.0, 3.0]
    assert rows["a"]["gain_vs_baselines"] == pytest.approx(100 * (4 / 2 - 1))
    assert rows["b"]["gain_vs_baselines"] == pytest.approx(100 * (1 / 3.5 - 1))
    assert relative_gain("a", {"a": 1.0, "b": 0.0}) is None  # the others gained nothing
    assert summary["reference"] == "a" and rows["a"]["paired"] is None
    assert rows["b"]["paired"]["losses"] == 1
    assert rows["a"]["cache_hit_share"] == pytest.approx(0.1)


def test_the_warmup_is_the_leading_warmup_phase_or_ten_trials():
    def proposed(phase):
        return TrialRecord({}, "completed", 0.0, {}, [], info=ProposalCharge(0, 0, phase).to_info())

    gp = [proposed("warmup")] * 4 + [proposed("bo"), proposed("warmup"), proposed("bo")]
    assert warmup_length(gp) == 4
    assert warmup_length([proposed("random")] * 25) == 10
    assert warmup_length([proposed("tpe")] * 3) == 3
    assert warmup_length([]) == 0
