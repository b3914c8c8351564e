"""A user brings their own ask/tell tuner: as a class, or by import path."""

import json
import random
import subprocess
import sys
import textwrap

import pytest

from memotune import Float, Int, Pipeline, stage, tune
from memotune.tuner import Proposal, Tuner, tuner_class, tuner_spec
from memotune.tuner.study import StudyError


class Corners(Tuner):
    """Tries the low corner, then the high one, then random points."""

    name = "corners"

    def _propose(self, pending, budget):
        index = self.told + len(pending)
        rng = random.Random(self.seed * 1000 + index)
        config = {}
        for s in self.pipeline.stages:
            config[s.name] = {}
            for name, param in s.space.items():
                if index < 2:
                    value = param.low if index == 0 else param.high
                else:
                    value = rng.uniform(param.low, param.high)
                config[s.name][name] = int(round(value)) if isinstance(param, Int) else value
        return Proposal(config, {"phase": "corners" if index < 2 else "random"})


@stage(space={"x": Float(0.0, 1.0), "n": Int(1, 3)})
def score(inputs, x, n):
    return {"objective": x * n}


def test_a_tuner_class_of_ones_own_runs_a_study_and_resumes():
    kwargs = dict(study="mine", progress=False, tracking=False, runner="local")
    result = tune(Pipeline([score]), tuner=Corners, trials=4, **kwargs)
    assert len(result.trials) == 4 and result.best_value == pytest.approx(3.0)  # the high corner
    assert result.trials[0].config["score"] == {"x": 0.0, "n": 1}
    assert result.tuner.endswith("test_user_tuner.py:Corners")  # what the journal keeps
    more = tune(Pipeline([score]), tuner=Corners, trials=6, **kwargs)
    assert len(more.trials) == 6 and more.restored == 4
    with pytest.raises(StudyError, match="it was run with tuner '.*:Corners', not 'random'"):
        tune(Pipeline([score]), tuner="random", trials=7, **kwargs)


def test_tuner_specs_name_registered_classes_by_name_and_others_by_path():
    from memotune.tuner.eeipu import EEIPU

    assert tuner_spec(EEIPU) == "eeipu" and tuner_spec("ei") == "ei"
    assert tuner_class("memotune.tuner.random_search:RandomSearch").name == "random"
    for spec, message in [
        ("nope", "unknown tuner 'nope'"),
        ("memotune.tuner.nothing:X", "cannot import 'memotune.tuner.nothing'"),
        ("memotune.tuner.base:Nothing", "has no 'Nothing'"),
        ("memotune.tuner.base:Proposal", "not a memotune.tuner.Tuner subclass"),
        ("missing.py:X", "no such file: missing.py"),
    ]:
        with pytest.raises(ValueError, match=message):
            tuner_class(spec)


MY_TUNER = textwrap.dedent(
    """
    from memotune.tuner import Proposal, Tuner

    class Middle(Tuner):
        def _propose(self, pending, budget):
            step = (self.told + len(pending) + 1) / 10
            return Proposal({"pick": {"v": step}}, {"phase": "sweep"})
    """
)

PIPE = textwrap.dedent(
    """
    from memotune import Float, Pipeline, stage

    @stage(space={"v": Float(0.0, 1.0)})
    def pick(inputs, v):
        return {"objective": -(v - 0.3) ** 2}

    pipeline = Pipeline([pick])
    """
)


def test_the_cli_takes_a_tuner_by_file_path_and_resumes_with_it(tmp_path):
    (tmp_path / "my_tuner.py").write_text(MY_TUNER)
    (tmp_path / "pipe.py").write_text(PIPE)

    def memotune(*args):
        return subprocess.run(
            [sys.executable, "-m", "memotune", "tune", "pipe.py", "--tuner", "my_tuner.py:Middle"]
            + ["--runner", "local", "--no-tracking", "--study", "cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = memotune("--trials", "3", "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["trials"] == 3 and summary["best_value"] == pytest.approx(0.0)
    assert summary["best_config"] == {"pick": {"v": 0.3}}
    again = memotune("--trials", "4")
    assert again.returncode == 0, again.stderr
    assert "resuming (3 trials restored)" in again.stderr and "sweep" in again.stderr
