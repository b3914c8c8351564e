"""``memotune studies`` and ``memotune show STUDY``, and ``--help`` on every command."""

import json
from pathlib import Path

import pytest

from memotune import Float, Int, Pipeline, stage, tune
from memotune.cli import COMMANDS, main


@stage(space={"size": Int(1, 2)})
def prepare(inputs, size):
    return size


@stage(space={"lr": Float(0.0, 1.0)})
def train(size, lr, context):
    if context.trial_id == 2:
        raise ValueError("diverged")
    return {"score": size * lr}


PIPE = Pipeline([prepare, train], objective="score", name="small")


def run_study(name, trials, budget=None):
    return tune(
        PIPE,
        tuner="random",
        trials=None if budget else trials,
        budget=budget,
        study=name,
        runner="local",
        progress=False,
        tracking=False,
    )


def test_studies_lists_each_study_with_tuner_trials_best_and_budget(capsys):
    assert main(["studies"]) == 0
    assert "no studies in .memotune/studies" in capsys.readouterr().out
    first = run_study("first", trials=5)
    second = run_study("second", trials=None, budget=0.5)
    assert main(["studies"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "study",
        "pipeline",
        "tuner",
        "trials",
        "failed",
        "best",
        "budget",
        "last",
        "trial",
    ]
    assert [line.split()[0] for line in lines[2:]] == ["second", "first"]  # most recent first
    row = lines[3].split()
    assert row[:5] == ["first", "small", "random", "5", "1"]
    assert f"score {first.best_value:.6g}" in lines[3] and "5/5 trials" in lines[3]
    assert main(["studies", "--json"]) == 0
    rows = {r["study"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["first"]["best"] == first.best_value and rows["first"]["failed"] == 1
    assert rows["second"]["budget_kind"] == "cost" and rows["second"]["budget_total"] == 0.5
    assert rows["second"]["trials"] == len(second.trials)
    assert rows["second"]["budget_spent"] == pytest.approx(second.budget["spent"])


def test_show_prints_the_best_trials_and_the_budget_by_stage(capsys):
    result = run_study("shown", trials=6)
    assert main(["show", "shown", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "study 'shown'" in out and "tuner random" in out and "maximize score" in out
    assert "trials: 6 finished (1 failed)" in out and "budget: 6 of 6 trials" in out
    best = sorted((r for r in result.trials if r.completed), key=lambda r: -r.objective)[:3]
    table = out[out.index("best 3 trials") :].splitlines()
    assert table[1].split() == [
        "rank",
        "trial",
        "score",
        "prepare.size",
        "train.lr",
        "hits",
        "cost",
    ]
    assert [int(line.split()[1]) for line in table[3:6]] == [r.trial_id for r in best]
    assert "budget by stage" in out and "saved_by_cache" in out

    assert main(["show", "shown", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    ranked = sorted((r for r in result.trials if r.completed), key=lambda r: -r.objective)
    assert [b["trial"] for b in shown["best"]] == [r.trial_id for r in ranked]
    stages = {s["stage"]: s for s in shown["stages"]}
    assert stages["prepare"]["runs"] + stages["prepare"]["hits"] == 6
    charged = sum(r.charged + r.info["tuner_charged"] for r in result.trials)
    assert stages["total"]["charged"] == pytest.approx(charged)  # the stages and the tuner
    assert stages["(tuner)"]["runs"] == 6
    assert shown["budget"]["trials"] == 6 and shown["failed"] == 1


def test_show_and_studies_errors_are_one_clear_line(capsys):
    run_study("only", trials=2)
    assert main(["show", "missing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "memotune: error: no study 'missing' in .memotune/studies (studies there: only)"
    assert main(["show", "only", "--top", "0"]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err
    broken = Path(".memotune/studies/broken")
    broken.mkdir()
    (broken / "journal.sqlite").write_text("not a database")
    assert main(["show", "broken"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memotune: error: cannot read study 'broken'") and "Traceback" not in err
    assert main(["studies"]) == 0  # the others are still listed
    listed = capsys.readouterr()
    assert "only" in listed.out and "skipped: cannot read study 'broken'" in listed.err


@pytest.mark.parametrize("command", [c.__name__.rsplit(".", 1)[1] for c in COMMANDS])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: memotune {command}") and "examples:" in out
    assert f"memotune {command}" in out[out.index("examples:") :]
