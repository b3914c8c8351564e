import numpy as np
import pytest

from memotune import Choice, ConfigError, Float, Int, Pipeline, SpaceError, stage


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"lr": Float(1.0, 1.0)}, "parameter 'lr': Float needs low < high"),
        ({"lr": Float(2.0, 1.0)}, "parameter 'lr': Float needs low < high"),
        ({"lr": Float(0.0, 1.0, log=True)}, "parameter 'lr': Float(log=True) needs low > 0"),
        ({"n": Int(0, 10, log=True)}, "parameter 'n': Int(log=True) needs low > 0"),
        ({"n": Int(1.5, 10)}, "parameter 'n': Int bounds must be integers"),
        ({"act": Choice([])}, "parameter 'act': Choice needs at least one option"),
        ({"act": Choice(["relu", "relu"])}, "parameter 'act': Choice has duplicate options"),
        ({"act": Choice([[1, 2]])}, "parameter 'act': Choice options must be"),
        ({"context": Int(1, 2)}, "parameter 'context': the name is reserved"),
        ({"upstream": Int(1, 2)}, "parameter 'upstream': the name is reserved"),
        ({"_hidden": Int(1, 2)}, "parameter '_hidden': the name is reserved"),
        ({"not valid": Int(1, 2)}, "must be Python identifiers"),
        ({"lr": (0.1, 1.0)}, "parameter 'lr': expected Float, Int or Choice"),
        ({"lr": Float(0.0, float("inf"))}, "parameter 'lr': Float bounds must be finite"),
    ],
)
def test_invalid_spaces_name_the_stage_and_parameter(space, message):
    def fit(upstream, **params):
        return upstream

    with pytest.raises(SpaceError, match="stage 'fit'") as error:
        stage(fit, space=space)
    assert message in str(error.value)


def test_stage_function_must_accept_its_parameters():
    def fit(upstream, lr):
        return upstream

    with pytest.raises(SpaceError, match="stage 'fit', parameter 'momentum': the function has no"):
        stage(fit, space={"lr": Float(0.1, 1), "momentum": Float(0, 1)})
    with pytest.raises(SpaceError, match="argument 'lr' has no default and is not in the search"):
        stage(fit, space={})


def test_duplicate_stage_names_are_refused():
    @stage
    def a(x):
        return x

    with pytest.raises(SpaceError, match="duplicate stage names: \\['a'\\]"):
        Pipeline([a, a])


@pytest.mark.parametrize("test_metric", ["loss", "", 3])
def test_a_test_metric_must_be_another_metric_name(test_metric):
    @stage
    def a(x):
        return x

    with pytest.raises(SpaceError, match="test_metric must be a metric name other than"):
        Pipeline([a], objective="loss", test_metric=test_metric)


@stage(space={"n": Int(1, 10), "lr": Float(1e-4, 1e-1, log=True), "act": Choice(["relu", "tanh"])})
def prepare(inputs, n, lr, act):
    return n


@stage
def finish(x):
    return float(x)


PIPE = Pipeline([prepare, finish], objective="score")
GOOD = {"prepare": {"n": 3, "lr": 0.01, "act": "relu"}}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "configuration is missing stage 'prepare'"),
        ({**GOOD, "train": {}}, "unknown stages ['train']"),
        ({"prepare": {"n": 3, "lr": 0.01}}, "stage 'prepare': missing parameters ['act']"),
        ({"prepare": {**GOOD["prepare"], "wd": 1}}, "stage 'prepare': unknown parameters ['wd']"),
        ({"prepare": {**GOOD["prepare"], "n": 11}}, "parameter 'n': 11 is outside [1, 10]"),
        ({"prepare": {**GOOD["prepare"], "n": 2.5}}, "parameter 'n': expected an integer"),
        ({"prepare": {**GOOD["prepare"], "lr": 1.0}}, "parameter 'lr': 1.0 is outside"),
        ({"prepare": {**GOOD["prepare"], "lr": "x"}}, "parameter 'lr': expected a number"),
        ({"prepare": {**GOOD["prepare"], "act": "gelu"}}, "'gelu' is not one of ['relu', 'tanh']"),
        ({"prepare": {**GOOD["prepare"], "n": True}}, "parameter 'n': expected an integer"),
    ],
)
def test_bad_configurations_fail_before_anything_runs(config, message):
    with pytest.raises(ConfigError) as error:
        PIPE.plan(config)
    assert message in str(error.value)


def test_numpy_scalars_and_integral_floats_give_the_same_keys():
    plain = PIPE.keys(GOOD)
    numpy = PIPE.keys(
        {"prepare": {"n": np.int64(3), "lr": np.float64(0.01), "act": np.str_("relu")}}
    )
    floaty = PIPE.keys({"prepare": {"n": 3.0, "lr": 0.01, "act": "relu"}})
    assert plain == numpy == floaty
    assert PIPE.keys({"prepare": {**GOOD["prepare"], "lr": 0.010000000000000002}}) != plain


def test_choice_keeps_option_types_apart():
    flag = Choice([True, 1, "1"])
    assert flag.validate(True, "x") is True
    assert flag.validate(1, "x") == 1 and flag.validate(1, "x") is not True
    assert flag.validate("1", "x") == "1"
    assert Choice([1, 2]).validate(2.0, "x") == 2
    with pytest.raises(SpaceError):
        Choice([1, 2]).validate(True, "x")
