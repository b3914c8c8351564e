import importlib.util
import sys
import textwrap
import time

import pytest

from memotune import Float, Int, Output, Pipeline, TrialFailed, run, stage

CALLS: list[str] = []


@stage(space={"size": Int(1, 100)})
def prepare(inputs, size):
    CALLS.append("prepare")
    time.sleep(0.05)
    return list(range(size))


@stage(space={"scale": Float(0.1, 10.0)})
def train(data, scale):
    CALLS.append("train")
    return sum(data) * scale


@stage
def evaluate(total):
    CALLS.append("evaluate")
    return {"score": total, "half": total / 2}


PIPE = Pipeline([prepare, train, evaluate], objective="score")


@pytest.fixture(autouse=True)
def reset_calls():
    CALLS.clear()


def config(size=10, scale=1.0):
    return {"prepare": {"size": size}, "train": {"scale": scale}}


def test_a_shared_prefix_is_computed_once_and_reused():
    first = run(PIPE, config(scale=1.0), cache="c")
    second = run(PIPE, config(scale=2.0), cache="c")
    assert CALLS == ["prepare", "train", "evaluate", "train", "evaluate"]
    assert [s.hit for s in first.stages] == [False, False, False]
    assert [s.hit for s in second.stages] == [True, False, False]
    assert second.objective == 2 * first.objective == 90.0
    assert second.metrics == {"score": 90.0, "half": 45.0}


def test_a_repeated_configuration_loads_only_its_last_stage():
    run(PIPE, config(), cache="c")
    CALLS.clear()
    record = run(PIPE, config(), cache="c")
    assert CALLS == []
    assert [(s.hit, s.loaded) for s in record.stages] == [
        (True, False),
        (True, False),
        (True, True),
    ]
    assert record.objective == 45.0


def test_a_hit_keeps_the_true_compute_seconds_not_the_load_time():
    first = run(PIPE, config(), cache="c")
    second = run(PIPE, config(scale=3.0), cache="c")
    assert first.stages[0].compute_seconds >= 0.05
    assert second.stages[0].hit
    assert second.stages[0].compute_seconds == first.stages[0].compute_seconds
    assert second.stages[0].cost == first.stages[0].cost
    assert second.stages[0].load_seconds < first.stages[0].compute_seconds


def test_without_a_cache_everything_runs():
    run(PIPE, config(), cache=None)
    run(PIPE, config(), cache=None)
    assert CALLS.count("prepare") == 2


@stage(space={"fail": Int(0, 1)})
def flaky(data, fail):
    if fail:
        raise ValueError("the loss diverged")
    return data


def test_a_failing_stage_keeps_upstream_work_and_names_itself():
    pipe = Pipeline([prepare, flaky, evaluate], objective="score")
    with pytest.raises(TrialFailed, match="stage 'flaky' failed: ValueError: the loss diverged"):
        run(pipe, {"prepare": {"size": 5}, "flaky": {"fail": 1}}, cache="c")
    record = run(
        pipe, {"prepare": {"size": 5}, "flaky": {"fail": 1}}, cache="c", raise_errors=False
    )
    assert record.status == "failed"
    assert "Traceback" in record.traceback
    assert [s.hit for s in record.stages] == [True, False]
    assert record.stages[1].error == "ValueError: the loss diverged"
    assert CALLS.count("prepare") == 1


@stage
def no_objective(x):
    return {"loss": 1.0}


def test_a_missing_objective_is_a_clear_failure():
    pipe = Pipeline([prepare, no_objective], objective="score")
    record = run(pipe, {"prepare": {"size": 3}}, cache="c", raise_errors=False)
    assert record.status == "failed"
    assert (
        record.error
        == "stage 'no_objective' returned metrics ['loss'] without the objective 'score'"
    )


@stage(space={"units": Float(1.0, 5.0)})
def reported(inputs, units, context):
    context.report(0, loss=2.0)
    context.report(1, loss=1.0)
    assert context.key and context.workdir
    return Output(units, cost=units * 10, metrics={"epochs": 2})


def test_a_stage_may_report_its_own_cost_metrics_and_history():
    pipe = Pipeline([reported], objective="objective", cost_unit="units", hit_cost=0.1)
    record = run(pipe, {"reported": {"units": 2.0}}, cache="c")
    assert record.objective == 2.0
    stage_record = record.stages[0]
    assert stage_record.cost == stage_record.charged == 20.0
    assert stage_record.metrics == {"epochs": 2.0}
    assert [h["loss"] for h in stage_record.history] == [2.0, 1.0]
    again = run(pipe, {"reported": {"units": 2.0}}, cache="c").stages[0]
    assert again.hit and again.cost == 20.0 and again.charged == 0.1
    assert again.history == stage_record.history


SOURCE = """
from memotune import Int, stage, Pipeline

@stage(space={"a": Int(0, 9)})
def first(inputs, a):
    CALLS.append("first")
    return a

@stage(space={"b": Int(0, 9)})
def second(x, b):
    CALLS.append("second")
    return x + b{second_edit}

@stage
def third(x):
    CALLS.append("third")
    return float(x){third_edit}

pipe = Pipeline([first, second, third])
"""


def load_pipeline(tmp_path, name, **edits):
    path = tmp_path / f"{name}.py"
    source = SOURCE
    for marker in ("second_edit", "third_edit"):
        source = source.replace("{" + marker + "}", edits.get(marker, ""))
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.CALLS = CALLS
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.pipe


def test_editing_a_stage_invalidates_it_and_downstream_only(tmp_path):
    cfg = {"first": {"a": 1}, "second": {"b": 2}}
    original = load_pipeline(tmp_path, "v1")
    run(original, cfg, cache="c")
    assert CALLS == ["first", "second", "third"]

    CALLS.clear()
    edited_second = load_pipeline(tmp_path, "v2", second_edit=" + 0")
    record = run(edited_second, cfg, cache="c")
    assert CALLS == ["second", "third"]
    assert [s.hit for s in record.stages] == [True, False, False]

    CALLS.clear()
    edited_third = load_pipeline(tmp_path, "v3", third_edit=" * 1")
    record = run(edited_third, cfg, cache="c")
    assert CALLS == ["third"]
    assert [s.hit for s in record.stages] == [True, True, False]

    CALLS.clear()
    run(load_pipeline(tmp_path, "v4"), cfg, cache="c")
    assert CALLS == []  # the original source again: every entry is still there


def test_explicit_versions_override_the_source_hash():
    a = stage(lambda x: x, name="s", version="7")
    b = stage(lambda x: x + 0, name="s", version="7")
    assert a.version == b.version == "7"
    assert stage(lambda x: x, name="s").version != stage(lambda x: x + 0, name="s").version
