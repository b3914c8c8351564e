"""The paper's three real pipelines: short sweeps from the CLI, and their stages' contracts."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from memotune import Int
from memotune.stages.tabular import Stack, TabularSplits, base_model_stage
from memotune.stages.text import (
    Distilled,
    TextSplits,
    cut_student,
    distill_stage,
    teacher_stage,
    tokenize_stage,
)
from memotune.stages.vision import ImageSplits, SmallCNN, augment_stage, classifier_stage, tta_stage

REPO = Path(__file__).resolve().parents[1]

# (example, objective bounds a handful of trials must reach; all three minimize)
PIPELINES = {
    "ensemble": (0.3, 1.4),  # validation log-loss, 4 noisy classes
    "vision": (0.05, 2.3),  # validation NLL, 10 classes: ln 10 = 2.3 is chance
    "language": (1.0, 40.0),  # validation perplexity per byte
}


@pytest.mark.parametrize(
    "name",
    # vision stands for the three in `make test` (each takes 20-30 s; all: `make test-all`);
    # every bench pipeline runs a configuration in test_bench_pipelines.py
    [pytest.param(n, marks=[] if n == "vision" else pytest.mark.slow) for n in sorted(PIPELINES)],
)
def test_each_paper_pipeline_tunes_from_the_cli(tmp_path, name):
    trials = 6
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "memotune",
            "tune",
            str(REPO / "examples" / f"{name}.py"),
            "--tuner",
            "eeipu",
            "--trials",
            str(trials),
            "--runner",
            "local",
            "--no-tracking",
            "--storage",
            str(tmp_path / "studies"),
            "--cache",
            str(tmp_path / "cache"),
            "--study",
            name,
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    low, high = PIPELINES[name]
    assert summary["trials"] == trials and summary["failed"] == 0
    assert low <= summary["best_value"] <= high
    assert summary["budget"]["compute"] > 0


def _digit_splits() -> TabularSplits:
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.5, random_state=0)
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=0
    )
    return TabularSplits(x_train, y_train, x_valid, y_valid, x_test, y_test)


def test_base_model_stage_stacks_out_of_fold_predictions():
    """A 1-nearest-neighbour model is perfect on rows it saw: the stacked training
    block must come from models that did not see the row."""
    nearest = base_model_stage(
        lambda k: KNeighborsClassifier(n_neighbors=k), space={"k": Int(1, 3)}, name="knn"
    )
    splits = _digit_splits()
    stack = nearest(splits, k=1).value
    assert isinstance(stack, Stack) and list(stack.blocks) == ["knn"]
    oof = stack.blocks["knn"]["train"]
    assert oof.shape == (len(splits.y_train), 10)
    assert 0.9 < (oof.argmax(1) == splits.y_train).mean() < 1.0
    again = base_model_stage(
        lambda k: KNeighborsClassifier(n_neighbors=k), space={"k": Int(1, 3)}, name="knn3"
    )(stack, k=3).value
    assert list(again.blocks) == ["knn", "knn3"]
    assert again.features("valid", passthrough=True).shape == (len(splits.y_valid), 20 + 64)


def test_vision_stages_share_the_trained_network_and_vote_over_views():
    digits = load_digits()
    x, y = digits.images[:600], digits.target[:600]
    splits = ImageSplits(x[:300], y[:300], x[300:450], y[300:450], x[450:], y[450:])
    prepared = augment_stage()(splits, normalize="scale", shifts=2)
    # the images and two shifted copies of each
    assert len(prepared.y_train) == len(prepared.x_train) == 3 * 300
    trained = classifier_stage(SmallCNN, space={"epochs": Int(1, 3)})(prepared, epochs=3).value
    vote = tta_stage(SmallCNN)
    one_view = vote(trained, views=1, temperature=1.0)
    assert one_view["accuracy"] > 0.5
    model = trained.build(SmallCNN)
    with torch.no_grad():
        plain = model(prepared.normalize(splits.x_valid.astype(np.float32))).argmax(1).numpy()
    assert one_view["accuracy"] == pytest.approx((plain == splits.y_valid).mean())
    assert vote(trained, views=5, temperature=1.0)["accuracy"] != one_view["accuracy"]


def test_distillation_rounds_chain_from_the_teacher_to_one_student():
    text = "\n\n".join(f"def f{i}(x):\n    return x * {i} + {i % 7}" for i in range(300))
    splits = TextSplits(train=text, valid=text[:2000])
    data = tokenize_stage(space={})(splits).value
    teacher = teacher_stage(
        space={}, fixed={"steps": 5, "n_layers": 2, "d_model": 32, "context": 16}
    )(data).value
    assert teacher.config["n_layers"] == 2
    first_round = distill_stage(space={}, fixed={"steps": 3}, name="d1")
    second_round = distill_stage(space={}, fixed={"steps": 3}, name="d2")
    once = first_round(teacher).value
    twice = second_round(once).value
    assert isinstance(twice, Distilled) and twice.rounds == 2
    assert twice.teacher is once.teacher is teacher
    assert twice.student.config["n_layers"] == 1
    start = once.student.state_dict
    assert any(not torch.equal(start[k], twice.student.state_dict[k]) for k in start)


def test_a_student_cut_with_every_block_is_the_teacher():
    teacher = teacher_stage(space={}, fixed={"steps": 1, "n_layers": 2, "d_model": 32})
    text = "abc def ghi " * 400
    net = teacher(tokenize_stage(space={})(TextSplits(text, text[:500])).value).value.build()
    tokens = torch.randint(0, net.config.vocab_size, (2, 12))
    with torch.no_grad():
        assert torch.allclose(cut_student(net, 2).eval()(tokens), net(tokens))
        assert cut_student(net, 1).config.n_layers == 1
    with pytest.raises(ValueError, match="1 to 2 layers"):
        cut_student(net, 3)
