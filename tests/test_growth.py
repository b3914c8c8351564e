"""Growing a deeper teacher from a shallower one's cached checkpoint (LEMON)."""

import pytest
import torch

from memotune import Float, Int, Pipeline, StageCache, run
from memotune.pipelines import SpaceError, run_trial
from memotune.stages.text import TextSplits, perplexity_stage, teacher_stage, tokenize_stage
from memotune.stages.text.model import LMConfig, TinyLM, grow


def test_a_grown_model_computes_what_the_smaller_one_did_and_then_learns():
    torch.manual_seed(0)
    small = TinyLM(LMConfig(50, d_model=16, n_layers=2, n_heads=2, context=8)).eval()
    tokens = torch.randint(0, 50, (4, 8))
    grown = grow(small, 4).eval()
    assert grown.config.n_layers == 4
    torch.testing.assert_close(grown(tokens), small(tokens), rtol=0, atol=1e-5)
    loss = grown(tokens).logsumexp(-1).mean()
    loss.backward()
    assert grown.blocks[3].linear2.weight.grad.abs().sum() > 0  # the new block will move
    with pytest.raises(ValueError, match="cannot grow"):
        grow(small, 1)


def _language(grow_every=4):
    from pydoc_data.topics import topics

    text = "\n".join(topics[name] for name in sorted(topics)[:40])
    teacher = teacher_stage(
        space={"lr": Float(1e-3, 1e-2, log=True), "steps": Int(4, 12), "n_layers": Int(1, 3)},
        fixed={"d_model": 16, "n_heads": 2, "context": 16, "batch_size": 4},
        fidelity=True,
        checkpoint_every=4,
        grow_every=grow_every,
    )
    return Pipeline(
        [tokenize_stage(fixed={"vocab_size": 300}, space={}), teacher, perplexity_stage()],
        objective="byte_perplexity",
        direction="minimize",
        inputs=TextSplits(train=text[:20_000], valid=text[20_000:24_000]),
        name="language-grown",
    )


def _setting(layers, steps):
    return {"tokenize": {}, "teacher": {"lr": 0.005, "steps": steps, "n_layers": layers}}


class Steps:
    """A judge that stops nothing and notes every step a teacher trained."""

    def __init__(self):
        self.trained = []

    def decides_at(self, stage, step):
        self.trained.append(step)
        return False

    def should_prune(self, trial_id, stage, step, metrics):
        return False


def _trained(language, layers, steps, cache):
    """The trial's record and the steps its teacher trained in this run."""
    watch = Steps()
    config = {**_setting(layers, steps), "evaluate": {}}
    record = run_trial(language, language.plan(config), cache, trial_id=0, judge=watch)
    return record, watch.trained


def test_a_deeper_teacher_starts_from_the_shallower_ones_cached_steps(tmp_path):
    language = _language()  # 1 layer for steps 1-4, 2 for 5-8, then 3
    cache = StageCache(tmp_path / "cache")
    shallow, trained = _trained(language, 2, 10, cache)
    assert shallow.stages[1].resumed_from is None and trained == list(range(1, 11))
    deep, trained = _trained(language, 3, 12, cache)
    assert deep.stages[1].resumed_from == 8  # the 2-layer teacher's state after 8 steps
    assert trained == [9, 10, 11, 12]  # only the steps with three layers
    assert deep.stages[1].resumed_cost > 0  # its cost from scratch stays known
    scratch, trained = _trained(language, 3, 12, StageCache(tmp_path / "s"))
    assert scratch.stages[1].resumed_from is None and trained == list(range(1, 13))
    assert deep.objective == scratch.objective  # wherever the shallow steps came from
    bare = run(language, {**_setting(3, 12), "evaluate": {}}, cache=None)  # no cache at all
    assert bare.objective == scratch.objective


def test_a_run_too_short_to_grow_ends_as_deep_as_it_got(tmp_path):
    language = _language(grow_every=6)  # a 3-layer teacher grows after steps 6 and 12
    cache = StageCache(tmp_path / "cache")
    two = run(language, {**_setting(2, 10), "evaluate": {}}, cache=cache)
    three = run(language, {**_setting(3, 10), "evaluate": {}}, cache=cache)
    assert three.stages[1].resumed_from == 10  # all ten steps are the 2-layer teacher's
    assert three.objective == two.objective


def test_growth_needs_a_steps_fidelity_and_the_depth_searched():
    space = {"steps": Int(4, 12), "n_layers": Int(1, 3)}
    with pytest.raises(SpaceError, match="grow_every"):
        teacher_stage(space=space, grow_every=4)  # no fidelity
    with pytest.raises(SpaceError, match="grow_every"):
        teacher_stage(space={"steps": Int(4, 12)}, fidelity=True, grow_every=4)
