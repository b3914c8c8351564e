"""Stages with a fidelity: checkpoints kept in the cache, and continued from it."""

import pytest
import torch
import torch.nn.functional as F

from memotune import ASHA, Float, Int, Output, Pipeline, StageCache, run, stage
from memotune.pipelines import SpaceError, run_trial

EPOCHS_RUN: list[int] = []  # every epoch any run of the training stage ran, in order


@stage(space={"shift": Float(-1.0, 1.0)}, version="1", name="prepare")
def prepare(inputs, shift):
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=generator)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + shift
    return X, y


@stage(
    space={"lr": Float(1e-3, 0.5, log=True), "epochs": Int(1, 20)},
    version="1",
    name="train",
    fidelity="epochs",
)
def train(data, lr, epochs, context):
    """A small MLP trained by SGD with momentum on shuffled mini-batches: what it does in
    an epoch depends on the optimizer's and the shuffling generator's state."""
    X, y = data
    if context.resume is None:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        shuffle = torch.Generator().manual_seed(1)
        start = 0
    else:
        model, optimizer, shuffle_state = context.resume.state
        shuffle = torch.Generator()
        shuffle.set_state(shuffle_state)
        start = context.resume.step
    for epoch in range(start, epochs):
        for batch in torch.randperm(len(X), generator=shuffle).split(16):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(X[batch]).squeeze(-1), y[batch])
            loss.backward()
            optimizer.step()
        EPOCHS_RUN.append(epoch + 1)
        context.report(epoch + 1, loss=loss.item())
        context.checkpoint(epoch + 1, (model, optimizer, shuffle.get_state()))
    with torch.no_grad():
        final = float(torch.nn.functional.mse_loss(model(X).squeeze(-1), y))
    return Output({"objective": final, "weights": [p.detach().clone() for p in model.parameters()]})


pipeline = Pipeline([prepare, train], name="fidelity")


def config(epochs, lr=0.05, shift=0.0):
    return {"prepare": {"shift": shift}, "train": {"lr": lr, "epochs": epochs}}


def trained(record):
    return record.stages[-1]


def weights_of(cache, record):
    return cache.get(trained(record).key).value["value"]["weights"]


@pytest.fixture(autouse=True)
def _no_epochs_yet():
    EPOCHS_RUN.clear()


def test_a_longer_run_continues_from_the_cache_and_equals_training_from_scratch(tmp_path):
    cache = StageCache(tmp_path / "cache")
    run(pipeline, config(3), cache=cache)
    EPOCHS_RUN.clear()
    continued = run(pipeline, config(7), cache=cache)
    assert EPOCHS_RUN == [4, 5, 6, 7]  # only the epochs the cache did not hold
    assert trained(continued).resumed_from == 3
    assert [h["step"] for h in trained(continued).history] == list(range(1, 8))

    scratch_cache = StageCache(tmp_path / "scratch")
    EPOCHS_RUN.clear()
    scratch = run(pipeline, config(7), cache=scratch_cache)
    assert EPOCHS_RUN == list(range(1, 8))
    assert trained(scratch).resumed_from is None
    assert continued.objective == scratch.objective
    for a, b in zip(weights_of(cache, continued), weights_of(scratch_cache, scratch), strict=True):
        assert torch.equal(a, b)
    # the entry remembers what the stage cost from scratch, not only the continuation
    entry = cache.info(trained(continued).key)
    assert entry.cost == pytest.approx(trained(continued).cost + trained(continued).resumed_cost)
    assert trained(continued).resumed_cost > 0


def test_a_shorter_run_goes_on_from_the_checkpoint_at_its_fidelity(tmp_path):
    cache = StageCache(tmp_path / "cache")
    run(pipeline, config(5), cache=cache)
    EPOCHS_RUN.clear()
    shorter = run(pipeline, config(2), cache=cache)
    assert EPOCHS_RUN == []  # the state after 2 epochs was kept on the way to 5
    assert trained(shorter).resumed_from == 2
    scratch = run(pipeline, config(2), cache=StageCache(tmp_path / "scratch"))
    assert shorter.objective == scratch.objective


@pytest.mark.parametrize(
    "other",
    [config(6, shift=0.5), config(6, lr=0.1)],
    ids=["another upstream output", "another learning rate"],
)
def test_a_checkpoint_is_never_continued_by_other_settings_or_another_upstream(tmp_path, other):
    cache = StageCache(tmp_path / "cache")
    run(pipeline, config(3), cache=cache)
    EPOCHS_RUN.clear()
    record = run(pipeline, other, cache=cache)
    assert trained(record).resumed_from is None
    assert EPOCHS_RUN == list(range(1, 7))


def test_checkpoints_are_not_offered_as_prefixes(tmp_path):
    cache = StageCache(tmp_path / "cache")
    run(pipeline, config(3), cache=cache)
    prefixes = cache.prefixes(pipeline.lineages)
    assert sorted(p.depth for p in prefixes) == [0, 1]  # prepare's output and train's


def test_a_fidelity_must_be_an_integer_setting_of_a_stage_that_takes_a_context():
    with pytest.raises(SpaceError, match="must be an Int"):
        stage(space={"lr": Float(0.1, 1.0)}, name="t", fidelity="lr")(lambda d, lr, context: d)
    with pytest.raises(SpaceError, match="must be an Int"):
        stage(space={"lr": Float(0.1, 1.0)}, name="t", fidelity="epochs")(lambda d, lr, context: d)
    with pytest.raises(SpaceError, match="context"):
        stage(space={"epochs": Int(1, 9)}, name="t", fidelity="epochs")(lambda d, epochs: d)


def test_a_ray_worker_continues_a_checkpoint_another_worker_kept(ray_session, tmp_path):
    from memotune.pipelines.ray_runner import RayRunner

    cache = StageCache(tmp_path / "cache")
    runner = RayRunner(pipeline, cache)
    runner.submit(0, config(3))
    while runner.running():
        runner.wait()
    runner.submit(1, config(6))
    (continued,) = runner.wait()
    assert trained(continued).resumed_from == 3
    assert [h["step"] for h in trained(continued).history] == list(range(1, 7))
    scratch = run(pipeline, config(6), cache=StageCache(tmp_path / "scratch"))
    assert continued.objective == scratch.objective


def test_the_vision_classifier_continues_from_its_checkpoints_as_if_from_scratch(tmp_path):
    import numpy as np
    from sklearn.datasets import load_digits

    from memotune.stages.vision import (
        ImageSplits,
        SmallCNN,
        augment_stage,
        classifier_stage,
        tta_stage,
    )

    digits = load_digits()
    images, labels = digits.images[:300], digits.target[:300]
    splits = ImageSplits(images[:200], labels[:200], images[200:250], labels[200:250],
                         images[250:], labels[250:])  # fmt: skip
    classifier = classifier_stage(
        SmallCNN,
        space={"epochs": Int(1, 6), "lr": Float(1e-3, 3e-2, log=True)},
        fixed={"batch_size": 32},
        fidelity=True,
    )
    vision = Pipeline(
        [augment_stage(), classifier, tta_stage(SmallCNN)],
        objective="nll",
        direction="minimize",
        inputs=splits,
        name="vision-fidelity",
    )

    def setting(epochs):
        return {
            "preprocess": {"shifts": 0, "normalize": "scale"},
            "train": {"epochs": epochs, "lr": 0.01},
            "postprocess": {"views": 1, "temperature": 1.0},
        }

    cache = StageCache(tmp_path / "cache")
    run(vision, setting(2), cache=cache)
    continued = run(vision, setting(5), cache=cache)
    scratch = run(vision, setting(5), cache=StageCache(tmp_path / "scratch"))
    assert continued.stages[1].resumed_from == 2 and scratch.stages[1].resumed_from is None
    assert [h["step"] for h in continued.stages[1].history] == [1, 2, 3, 4, 5]
    assert continued.objective == scratch.objective
    assert continued.stages[1].history == scratch.stages[1].history
    assert np.isfinite(continued.stages[1].history[-1]["train_loss"])
    # the validation NLL is measured only where a pruner decides: at its rungs
    assert not any("valid_nll" in h for h in scratch.stages[1].history)
    rungs = ASHA("valid_nll", min_step=1, reduction=2).for_pipeline(vision)  # 1, 2, 4
    judged = run_trial(vision, vision.plan(setting(5)), None, trial_id=0, judge=rungs)
    assert judged.completed  # the first trial at each rung is its best
    reports = [h for h in judged.stages[1].history if "valid_nll" in h]
    assert [h["step"] for h in reports] == [1, 2, 4]
    assert all(h["calibrated_nll"] <= h["valid_nll"] for h in reports)
    assert judged.objective == scratch.objective  # measuring it changes nothing


def test_the_calibrated_nll_is_blind_to_how_confident_the_logits_are():
    from memotune.stages.vision import calibrated_nll

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (600,), generator=generator)
    logits = torch.randn(600, 10, generator=generator) + 2.0 * F.one_hot(labels, 10)
    for confidence in (0.3, 1.0, 5.0):  # within the TTA stage's temperatures (0.1–10)
        scaled = confidence * logits
        assert calibrated_nll(scaled, labels) == pytest.approx(calibrated_nll(logits, labels), 1e-4)
        assert calibrated_nll(scaled, labels) <= F.cross_entropy(scaled, labels).item()
    overconfident = 5.0 * logits
    at_one = F.cross_entropy(overconfident, labels).item()
    assert calibrated_nll(overconfident, labels) < at_one - 0.1


def test_the_language_teacher_continues_its_steps_as_if_from_scratch(tmp_path):
    from pydoc_data.topics import topics

    from memotune.stages.text import TextSplits, perplexity_stage, teacher_stage, tokenize_stage

    text = "\n".join(topics[name] for name in sorted(topics)[:40])
    splits = TextSplits(train=text[:20_000], valid=text[20_000:24_000])
    teacher = teacher_stage(
        space={"lr": Float(1e-3, 1e-2, log=True), "steps": Int(4, 12)},
        fixed={"d_model": 16, "n_heads": 2, "n_layers": 1, "context": 16, "batch_size": 4},
        fidelity=True,
        checkpoint_every=3,
    )
    language = Pipeline(
        [tokenize_stage(fixed={"vocab_size": 300}, space={}), teacher, perplexity_stage()],
        objective="byte_perplexity",
        direction="minimize",
        inputs=splits,
        name="language-steps",
    )

    def setting(steps):
        return {"tokenize": {}, "teacher": {"lr": 0.005, "steps": steps}, "evaluate": {}}

    cache = StageCache(tmp_path / "cache")
    run(language, setting(7), cache=cache)  # checkpoints at steps 3, 6 and 7
    continued = run(language, setting(11), cache=cache)
    scratch = run(language, setting(11), cache=StageCache(tmp_path / "scratch"))
    assert continued.stages[1].resumed_from == 7 and scratch.stages[1].resumed_from is None
    assert continued.objective == scratch.objective
    assert continued.metrics == scratch.metrics
    shorter = run(language, setting(5), cache=cache)  # goes on from step 3 of the 7-step run
    assert shorter.stages[1].resumed_from == 3
    assert shorter.objective == run(language, setting(5), cache=None).objective
    rungs = ASHA("valid_byte_perplexity", min_step=4, reduction=2).for_pipeline(language)  # 4 and 8
    judged = run_trial(language, language.plan(setting(11)), None, trial_id=0, judge=rungs)
    assert [h["step"] for h in judged.stages[1].history] == [4, 8]
    assert judged.objective == scratch.objective


def test_a_steps_fidelity_needs_steps_searched():
    from memotune.stages.text import teacher_stage

    with pytest.raises(SpaceError, match="steps fidelity needs 'steps' searched"):
        teacher_stage(space={"lr": Float(1e-3, 1e-2)}, fidelity=True)
