"""Early stopping in the study: ASHA prunes, pruned work stays cached and resumable."""

import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from memotune import ASHA, Float, Int, Pipeline, StageCache, TrialPruned, run, stage, tune
from memotune.cli import main
from memotune.tuner import Proposal, Tuner
from memotune.tuner.budget import TRIALS, Budget
from memotune.tuner.study import Study

FIDELITY_EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "fidelity.py")

#: The learning rates the scripted tuner proposes, in order: the best first.
RATES = [0.1, 0.3, 0.02, 0.5, 0.12, 0.9]


@stage(space={}, version="1", name="prepare")
def prepare(inputs):
    return 0.1  # where the loss is lowest


@stage(space={"lr": Float(0.01, 1.0), "epochs": Int(1, 9)}, name="train", fidelity="epochs")
def train(best_lr, lr, epochs, context):
    """A deterministic stand-in for training: the loss falls with the epochs, to a floor
    set by how far ``lr`` is from the best one."""
    start = context.resume.step if context.resume else 0
    loss = None
    for epoch in range(start + 1, epochs + 1):
        loss = (lr - best_lr) ** 2 + 1.0 / epoch
        context.report(epoch, loss=loss)
        context.checkpoint(epoch, {"epoch": epoch})
        if context.should_prune():
            raise TrialPruned()
    return {"loss": (lr - best_lr) ** 2 + 1.0 / epochs}


pipeline = Pipeline([prepare, train], objective="loss", direction="minimize", name="pruning")


class Scripted(Tuner):
    """Proposes the learning rates of ``RATES`` in order, each with 9 epochs."""

    def _propose(self, pending, budget):
        rate = RATES[(self.told + len(pending)) % len(RATES)]
        return Proposal({"prepare": {}, "train": {"lr": rate, "epochs": 9}})


class Closer(Tuner):
    """Rates ever closer to the best, so the first three finish; then one behind at
    the first rung, whose objective the three forecast."""

    def _propose(self, pending, budget):
        rate = [0.6, 0.3, 0.1, 0.45][self.told + len(pending)]
        return Proposal({"prepare": {}, "train": {"lr": rate, "epochs": 9}})


def plain_asha():
    """ASHA's own rule: every rung stops trials from the first (no evidence asked)."""
    return ASHA("loss", reduction=3, min_evidence=0)


def open_study(tmp_path, pruner, trials=6, tuner=Scripted, **options):
    return Study(
        pipeline,
        name="s",
        budget=Budget(TRIALS, trials),
        tuner=tuner,
        storage=tmp_path / "studies",
        cache=StageCache(tmp_path / "cache"),
        pruner=pruner,
        **options,
    )


def test_asha_stops_the_trials_that_fall_behind_at_a_rung(tmp_path):
    result = open_study(tmp_path, plain_asha(), max_consecutive_failures=1).run()
    statuses = [r.status for r in result.trials]
    assert statuses[0] == "completed"  # the first to reach each rung is its best
    assert statuses[1] == "pruned"  # lr 0.3 is behind lr 0.1 at the first rung
    assert "pruned" in statuses[2:] and "failed" not in statuses
    pruned = result.trials[1]
    assert pruned.objective is None
    assert [h["step"] for h in pruned.stages[-1].history] == [1]
    assert pruned.stages[-1].error == "pruned after step 1"
    assert pruned.error == "stage 'train' pruned after step 1"
    assert pruned.charged > 0  # it charged the budget for the step it ran


def test_the_first_trials_at_a_rung_run_to_the_end_until_it_has_evidence(tmp_path):
    result = open_study(tmp_path, ASHA("loss", reduction=3, min_evidence=3)).run()
    statuses = [r.status for r in result.trials]
    # lr 0.3 and 0.02 fall behind lr 0.1 at the first rung, but no trial had finished
    assert statuses[:3] == ["completed"] * 3
    assert statuses[3] == "pruned"  # lr 0.5: three finished trials ranked the rung right


def test_a_pruned_trial_is_counted_and_continues_from_where_it_stopped(tmp_path, capsys):
    result = open_study(tmp_path, plain_asha(), trials=2).run()
    assert result.trials[1].pruned
    assert main(["show", "s", "--storage", str(tmp_path / "studies")]) == 0
    assert "trials: 2 finished (0 failed, 1 pruned)" in capsys.readouterr().out
    assert main(["show", "s", "--storage", str(tmp_path / "studies"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["pruned"] == 1 and shown["failed"] == 0
    again = run(pipeline, result.trials[1].config, cache=StageCache(tmp_path / "cache"))
    assert again.completed
    assert again.stages[-1].resumed_from == 1
    assert [h["step"] for h in again.stages[-1].history] == list(range(1, 10))


def test_a_resumed_study_keeps_its_rungs(tmp_path):
    first = plain_asha()
    before = open_study(tmp_path, first, trials=3).run()
    assert [r.status for r in before.trials] == ["completed", "pruned", "pruned"]
    resumed = plain_asha()
    result = open_study(tmp_path, resumed, trials=4).run()
    assert resumed.rungs[3] == first.rungs[3] and resumed.rungs[9] == first.rungs[9]
    new = result.trials[3]
    assert resumed.rungs[1] == {**first.rungs[1], new.trial_id: pytest.approx(0.4**2 + 1.0)}
    assert new.pruned  # lr 0.5, judged against the three trials before the resume


def test_asha_promotes_the_best_third_at_each_rung():
    asha = ASHA("loss", min_step=1, reduction=3, min_evidence=0)
    assert [asha.should_prune(t, "train", 1, {"loss": v}) for t, v in enumerate([5, 4, 6])] == [
        False,
        False,  # better than all so far
        True,
    ]
    assert not asha.should_prune(9, "train", 2, {"loss": 100.0})  # 2 is not a rung
    assert asha.should_prune(10, "train", 3, {"loss": 1.0}) is False
    assert not asha.should_prune(11, "train", 1, {"other": 1.0})  # not its metric
    with pytest.raises(ValueError, match="mode"):
        ASHA("loss", mode="lowest")
    with pytest.raises(ValueError, match="min_evidence"):
        ASHA("loss", min_evidence=-1)


def test_trials_on_ray_workers_are_pruned_by_one_shared_pruner(ray_session, tmp_path):
    from memotune.pipelines.ray_runner import RayRunner

    cache = StageCache(tmp_path / "cache")
    runner = RayRunner(pipeline, cache)
    result = open_study(tmp_path, plain_asha(), runner=runner, workers=2).run()
    statuses = [r.status for r in result.trials]
    assert "completed" in statuses and "pruned" in statuses and "failed" not in statuses
    pruned = next(r for r in result.trials if r.pruned)
    stopped_at = pruned.stages[-1].history[-1]["step"]
    again = run(pipeline, pruned.config, cache=cache)
    assert again.stages[-1].resumed_from == stopped_at


def test_mlflow_shows_pruned_trials_as_stopped_with_their_curves(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = tune(
        pipeline,
        tuner=Closer,
        trials=4,
        study="tracked",
        runner="local",
        progress=False,
        tracking_uri=uri,
        storage=tmp_path / "studies",
        cache=tmp_path / "cache",
        pruner=ASHA("loss", min_evidence=3),
    )
    assert [r.status for r in result.trials] == ["completed"] * 3 + ["pruned"]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    trials = {r.data.tags["memotune.trial"]: r for r in runs if "memotune.trial" in r.data.tags}
    statuses = [trials[str(r.trial_id)].info.status for r in result.trials]
    assert statuses == ["FINISHED"] * 3 + ["KILLED"]
    stopped = trials[str(result.trials[3].trial_id)]
    curve = client.get_metric_history(stopped.info.run_id, "train.loss")
    assert [m.step for m in curve] == [1]  # where it stopped
    assert stopped.data.metrics["forecast"] == pytest.approx(result.trials[3].forecast)
    assert "forecast" not in trials[str(result.trials[0].trial_id)].data.metrics


class Continuing(Tuner):
    """lr 0.1 for 3 epochs, lr 0.3 for 9 (pruned at step 1), lr 0.1 for 9 (continues from
    epoch 3), lr 0.3 for 2 (continues from the pruned trial's epoch 1)."""

    PLAN = [(0.1, 3), (0.3, 9), (0.1, 9), (0.3, 2)]

    def _propose(self, pending, budget):
        lr, epochs = self.PLAN[(self.told + len(pending)) % len(self.PLAN)]
        return Proposal({"prepare": {}, "train": {"lr": lr, "epochs": epochs}})


def test_a_bench_run_counts_pruned_trials_and_the_epochs_continuation_saved():
    from memotune.bench import run_one
    from memotune.tuner import tuner_spec

    spec = tuner_spec(Continuing)
    pruned = run_one(lambda: pipeline, f"{spec}+asha", 0, None, 4, pruner=plain_asha())
    assert pruned.tuner == f"{spec}+asha"
    assert (pruned.trials, pruned.pruned, pruned.failed) == (4, 1, 0)
    assert pruned.continued_steps == 3 + 1
    plain = run_one(lambda: pipeline, spec, 0, None, 4, pruner=plain_asha())
    assert (plain.pruned, plain.continued_steps) == (0, 3 + 2)  # its pruner is not used


def test_the_tuner_sees_a_trial_pruned_in_the_last_stage_at_the_fidelity_it_reached(tmp_path):
    from memotune.tuner.memo import MemoTuner

    result = open_study(tmp_path, plain_asha(), trials=2).run()
    pruned = result.trials[1]
    assert pruned.pruned and pruned.config["train"]["epochs"] == 9
    tuner = MemoTuner(pipeline, seed=0)
    for record in result.trials:
        tuner.tell(record)
    seen = tuner.observations.items[1]
    assert seen.config == {"prepare": {}, "train": {"lr": 0.3, "epochs": 1}}
    assert seen.value == pytest.approx(-(0.2**2 + 1.0))  # minimized: larger is better
    assert seen.stage_costs[1] == pytest.approx(pruned.stages[1].cost)


def test_ray_tunes_asha_runs_as_a_bench_peer_on_the_same_budget(tmp_path):
    """Ray Tune's ASHA with Optuna's TPE, run live by ``memotune bench``: it stops trials,
    charges what they ran and stops proposing once the budget is spent."""
    out = tmp_path / "peer.json"
    shutil.copy(FIDELITY_EXAMPLE, "fidelity.py")  # a path relative to here, not the trial's
    argv = ["bench", "--pipeline", "fidelity.py", "--tuners", "raytune+asha"]
    argv += ["--prune", "valid_loss", "--seeds", "1", "--budget", "4", "--processes", "1"]
    assert main([*argv, "--json", str(out)]) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["tuner"] == "raytune+asha" and run["failed"] == 0
    assert run["trials"] > 10 and 0 < run["pruned"] < run["trials"]
    assert run["continued_steps"] == 0  # no cache: nothing is continued
    assert run["test"] is not None and run["best"] is not None
    spent = run["budget"]
    assert 4.0 <= spent["spent"] < 4.0 + 1.0  # the trial that crossed the line finishes
    assert spent["cache_loads"] == 0.0 and 0 < spent["tuner"] < 0.1 * spent["spent"]
    assert run["proposals"] == run["trials"]


#: A pipeline that loads where the bench runs but not in a Ray Tune trial's process (as
#: with a package the workers lack).
UNLOADABLE = """
import ray

from memotune import Int, Pipeline, stage

if ray.is_initialized() and ray.get_runtime_context().get_actor_id():  # a Ray Tune trial
    raise ImportError("no such package on this worker")


@stage(space={"x": Int(1, 9)}, fidelity="x")
def fit(inputs, x, context):
    return {"loss": float(x)}


pipeline = Pipeline([fit], objective="loss", direction="minimize", name="unloadable")
"""


@pytest.mark.slow  # 60 s on fc-v782; the Ray Tune peer itself runs in the bench-peer test above
def test_ray_tunes_asha_gives_up_a_run_whose_trials_fail_before_they_run():
    Path("unloadable.py").write_text(UNLOADABLE)
    argv = ["bench", "--pipeline", "unloadable.py", "--tuners", "raytune+asha", "--prune", "loss"]
    # its trials charge nothing, yet the run stops, with the trials' error
    with pytest.raises(SystemExit, match="last 5 trials failed: ImportError: no such package"):
        main([*argv, "--seeds", "1", "--budget", "4", "--processes", "1"])


def test_ray_tunes_asha_needs_the_metric_to_prune_on(capsys):
    argv = ["bench", "--pipeline", FIDELITY_EXAMPLE, "--tuners", "raytune+asha", "--budget", "4"]
    assert main(argv) == 2
    assert "raytune+asha runs with early stopping: give --prune METRIC" in capsys.readouterr().err


def test_memo_offers_to_continue_a_cached_training_run_for_the_steps_it_lacks(tmp_path):
    from memotune.pipelines.checkpoints import resumable
    from memotune.tuner.memo import MemoTuner

    result = open_study(tmp_path, plain_asha(), trials=2).run()
    assert [r.status for r in result.trials] == ["completed", "pruned"]
    cache = StageCache(tmp_path / "cache")
    tuner = MemoTuner(pipeline, seed=0, cache=cache)
    for record in result.trials:
        tuner.tell(record)
    (pruned_run,) = [r for r in resumable(cache, pipeline) if r.config["train"]["lr"] == 0.3]
    assert pruned_run.step == 1  # the completed run (lr 0.1) is at its bound: nothing to add
    offered = {p.config["train"]["epochs"]: p for p in tuner._continuations()}
    assert set(offered) == {3, 9}  # the next rung, and the fidelity's bound
    for steps, prefix in offered.items():
        assert prefix.depth == 2 and prefix.resumes == 1
        assert prefix.config == {"prepare": {}, "train": {"lr": 0.3, "epochs": steps}}
        reuse = tuner._reuse_cost(2, pruned_run.load_seconds, pruned_run.size_bytes)
        assert prefix.cached_cost == pytest.approx(reuse + pruned_run.cost * (steps - 1))
    assert MemoTuner(pipeline, seed=0, cache=cache, max_continued=0)._continuations() == []
    one = MemoTuner(pipeline, seed=0, cache=cache, max_continued=1)
    for record in result.trials:
        one.tell(record)
    # the completed run scored best, but is at its bound: it takes no place of the one
    assert {p.config["train"]["lr"] for p in one._continuations()} == {0.3}


def test_asha_starts_its_rungs_at_the_fidelitys_lower_bound_unless_told():
    @stage(space={"epochs": Int(4, 16)}, name="fit", fidelity="epochs")
    def fit(inputs, epochs, context):
        return {"loss": 1.0 / epochs}

    four_to_sixteen = Pipeline([fit], objective="loss", direction="minimize", name="p")
    assert ASHA("loss").for_pipeline(four_to_sixteen).min_step == 4
    assert ASHA("loss", min_step=2).for_pipeline(four_to_sixteen).min_step == 2
    assert ASHA("loss", stage="other").for_pipeline(four_to_sixteen).min_step == 1
    with pytest.raises(RuntimeError, match="for_pipeline"):
        ASHA("loss").should_prune(0, "fit", 4, {"loss": 0.5})


def test_a_trial_pruned_before_the_last_stage_is_modelled_as_typical_not_failed():
    from memotune.pipelines import StageRecord, TrialRecord
    from memotune.tuner.encoding import SpaceEncoder
    from memotune.tuner.observations import Observations

    @stage(space={"level": Float(0.0, 1.0)}, name="score")
    def score(trained, level):
        return {"loss": level}

    three = Pipeline([prepare, train, score], objective="loss", direction="minimize", name="p3")
    observations = Observations(three, SpaceEncoder(three))

    def trial(status, loss, lr):
        config = {"prepare": {}, "train": {"lr": lr, "epochs": 9}, "score": {"level": 0.5}}
        stages = [StageRecord(stage=s.name, key=s.name, cost=1.0) for s in three.stages]
        if status != "completed":  # stopped (or broken) in the training stage
            stages = stages[:2]
            stages[1].error = "pruned after step 1" if status == "pruned" else "boom"
        return TrialRecord(config, status, loss, {} if loss is None else {"loss": loss}, stages)

    for loss, lr in ((1.0, 0.1), (2.0, 0.2), (4.0, 0.3)):
        observations.add(trial("completed", loss, lr))
    observations.add(trial("pruned", None, 0.4))
    observations.add(trial("failed", None, 0.5))
    forecast = trial("pruned", None, 0.6)
    forecast.forecast = 3.0  # what the pruner forecast from its reports
    observations.add(forecast)
    _, values = observations.objective_data()
    assert values.squeeze(-1).tolist() == [-1.0, -2.0, -4.0, -2.0, -4.0, -3.0]


def test_asha_forecasts_a_pruned_trials_objective_from_its_last_rung():
    from memotune.pipelines import StageRecord, TrialRecord

    asha = ASHA("loss", reduction=3, min_evidence=3).for_pipeline(pipeline)  # rungs 1, 3, 9

    def trial(trial_id, reports, objective=None):
        history = [{"step": step, "loss": loss} for step, loss in reports]
        stages = [StageRecord(stage="train", key=str(trial_id), cost=1.0, history=history)]
        status = "pruned" if objective is None else "completed"
        return TrialRecord({}, status, objective, {}, stages, trial_id=trial_id)

    stopped = trial(9, [(1, 5.0), (2, 4.5), (3, 4.0)])  # stopped at rung 3
    for trial_id, at_rung_3 in enumerate([1.0, 2.0]):
        asha.observe(trial(trial_id, [(1, 9.0), (3, at_rung_3)], objective=2 * at_rung_3 + 1))
    assert asha.forecast(stopped) is None  # two finished trials: too few to tell
    asha.observe(trial(2, [(3, 6.0)], objective=13.0))
    assert asha.forecast(stopped) == pytest.approx(9.0)  # 2 · 4 + 1, from rung 3
    assert asha.forecast(trial(10, [(3, 50.0)])) == pytest.approx(13.0)  # no extrapolating
    assert asha.forecast(trial(11, [(2, 1.0)])) is None  # 2 is no rung
    alike = ASHA("loss", min_evidence=3).for_pipeline(pipeline)
    for trial_id, objective in enumerate([1.0, 2.0, 3.0]):  # the rung tells them apart not
        alike.observe(trial(trial_id, [(1, 5.0)], objective=objective))
    assert alike.forecast(trial(12, [(1, 6.0)])) is None  # not NaN, which would break the GP


def test_a_pruned_trials_forecast_is_journaled_with_it(tmp_path):
    study = open_study(tmp_path, ASHA("loss", min_evidence=3), trials=4, tuner=Closer)
    trials = study.run().trials
    assert [t.status for t in trials] == ["completed"] * 3 + ["pruned"]
    assert trials[3].forecast == pytest.approx(0.35**2 + 1 - 8 / 9)  # loss at epoch 1 − 8/9
    assert [t.forecast for t in trials[:3]] == [None] * 3
    resumed = open_study(tmp_path, ASHA("loss", min_evidence=3), trials=4, tuner=Closer).run()
    assert resumed.trials[3].forecast == trials[3].forecast


@pytest.mark.parametrize("agrees", [True, False])
def test_a_rung_stops_trials_only_once_it_ranked_them_as_their_objective_did(agrees):
    from memotune.pipelines import StageRecord, TrialRecord

    asha = ASHA("loss", reduction=3, min_evidence=8).for_pipeline(pipeline)  # rungs 1, 3, 9

    def finished(trial_id, at_rung):
        objective = at_rung if agrees else 10.0 - at_rung  # the final loss, minimized
        history = [{"step": 1, "loss": at_rung}, {"step": 9, "loss": objective}]
        stages = [StageRecord(stage="train", key=str(trial_id), cost=1.0, history=history)]
        metrics = {"loss": objective}
        return TrialRecord({}, "completed", objective, metrics, stages, trial_id=trial_id)

    for trial_id in range(7):
        asha.observe(finished(trial_id, at_rung=float(trial_id)))
    assert asha.agreement(1) is None  # too few finished trials to judge the rung by
    assert not asha.should_prune(100, "train", 1, {"loss": 9.0})  # behind, but not judged
    assert (
        ASHA("loss", min_evidence=0, rungs=asha.rungs)
        .for_pipeline(pipeline)
        .should_prune(100, "train", 1, {"loss": 9.0})
    )  # ASHA's own rule stops it
    asha.observe(finished(7, at_rung=7.0))
    assert asha.agreement(1) == pytest.approx(1.0 if agrees else -1.0)
    # a trial far behind at the rung is stopped only where the rung has predicted the end
    assert asha.should_prune(101, "train", 1, {"loss": 9.5}) is agrees
    assert asha.agreement(3) is None  # nothing finished reported at rung 3


def test_a_rung_that_ranks_roughly_keeps_enough_to_keep_the_best_trials():
    """Nine finished trials; one of the best three by objective stood seventh of nine at
    the rung: to have kept it (and so 90% of the best three), the rung keeps 7/9."""
    from memotune.pipelines import StageRecord, TrialRecord

    def finished(trial_id, at_rung, objective):
        history = [{"step": 1, "loss": at_rung}, {"step": 9, "loss": objective}]
        stages = [StageRecord(stage="train", key=str(trial_id), cost=1.0, history=history)]
        return TrialRecord({}, "completed", objective, {}, stages, trial_id=trial_id)

    rough = ASHA("loss", reduction=3, min_evidence=8).for_pipeline(pipeline)  # rungs 1, 3, 9
    exact = ASHA("loss", reduction=3, min_evidence=8).for_pipeline(pipeline)
    objectives = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    for trial_id, objective in enumerate(objectives):
        exact.observe(finished(trial_id, at_rung=objective, objective=objective))
        at_rung = {2: 7.0, 6: 3.0}.get(trial_id, objective)  # the third best stood 7th
        rough.observe(finished(trial_id, at_rung=at_rung, objective=objective))
    assert exact.keep_share(1) == pytest.approx(1 / 3)
    assert rough.agreement(1) >= rough.min_agreement  # trusted, yet rough
    assert rough.keep_share(1) == pytest.approx(7 / 9)
    # a trial sixth of nine at the rung goes on under the rough rung, not the exact one
    for asha in (rough, exact):
        for trial_id in range(100, 108):
            asha.should_prune(trial_id, "train", 1, {"loss": float(trial_id - 100)})
    assert not rough.should_prune(200, "train", 1, {"loss": 4.5})
    assert exact.should_prune(200, "train", 1, {"loss": 4.5})
    assert ASHA("loss", min_evidence=0, rungs=rough.rungs).keep_share(1) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        ASHA("loss", min_recall=0.0)
