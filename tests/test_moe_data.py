"""The offline multi-task corpus, the BPE tokenizer and the MoE stage settings."""

from __future__ import annotations

import pickle
import statistics

import numpy as np
import pytest

from memotune.pipelines import Float, SpaceError
from memotune.stages.moe import MoESettings, build_corpus, moe_trainer, tokenize_stage
from memotune.stages.moe.corpus import TASKS
from memotune.stages.moe.dataset import SPECIALS, tokenize_corpus
from memotune.stages.moe.tokenizer import train_bpe


@pytest.fixture(scope="module")
def corpus():
    return build_corpus()


@pytest.fixture(scope="module")
def tokenized(corpus):
    return tokenize_corpus(corpus, vocab_size=400, max_tokens=64)


def test_corpus_has_four_tasks_of_very_different_lengths(corpus):
    lengths = {task: [len(s.text) for s in corpus.train if s.task == task] for task in TASKS}
    assert all(len(v) > 100 for v in lengths.values())
    medians = {task: statistics.median(v) for task, v in lengths.items()}
    assert medians["sentence"] < medians["paragraph"] < medians["section"]
    assert medians["section"] > 5 * medians["sentence"]
    assert 0.05 < len(corpus.valid) / (len(corpus.train) + len(corpus.valid)) < 0.3


def test_corpus_splits_share_no_text(corpus):
    train = {s.text for s in corpus.train}
    assert all(s.text not in train for s in corpus.valid)
    assert {s.task for s in corpus.valid} == set(TASKS)


def test_bpe_round_trips_any_text_and_compresses(corpus):
    tokenizer = train_bpe(corpus.texts()[:400], vocab_size=450, specials=SPECIALS)
    assert tokenizer.vocab_size == 450
    text = 'The "if" statement — naïve café ✓\n\n   x = [1, 2]  # tabs\there'
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert max(ids) < tokenizer.vocab_size and min(ids) >= len(SPECIALS)
    prose = corpus.train[0].text
    assert len(tokenizer.encode(prose)) < 0.7 * len(prose.encode())
    widths = tokenizer.token_bytes()
    assert int(widths[tokenizer.encode(text)].sum()) == len(text.encode())
    again = pickle.loads(pickle.dumps(tokenizer))
    assert again.encode(text) == ids


def test_bpe_training_is_deterministic_and_rejects_a_too_small_vocabulary(corpus):
    texts = corpus.texts()[:200]
    first = train_bpe(texts, 320, SPECIALS)
    assert first.merges == train_bpe(texts, 320, SPECIALS).merges
    with pytest.raises(ValueError, match="vocab_size must be at least"):
        train_bpe(texts, 100, SPECIALS)


def test_tokenized_samples_carry_their_task_tag_and_fit_max_tokens(corpus, tokenized):
    tokenizer = tokenized.tokenizer
    end = tokenizer.special("<end>")
    for sample, task in zip(tokenized.train, tokenized.train_tasks, strict=True):
        assert sample[0] == tokenizer.special(f"<{task}>")
        assert 2 <= len(sample) <= 64
        assert sample[-1] == end or len(sample) == 64  # a cut piece is full
    ends = sum(int(s[-1] == end) for s in tokenized.train)
    assert 0.97 * len(corpus.train) <= ends <= len(corpus.train)  # one last piece per sample
    assert len(tokenized.train) > 1.5 * len(corpus.train)  # long samples were cut
    lengths = np.array(tokenized.lengths())
    assert lengths.min() < 10 and (lengths == 64).sum() > 100  # very different lengths


def test_settings_reject_experts_that_cannot_be_split_over_the_workers():
    with pytest.raises(ValueError, match="n_experts=6 is not a multiple of num_workers=4"):
        MoESettings(n_experts=6, num_workers=4)
    MoESettings(n_experts=6, num_workers=4, parallel="replicated")  # replicated holds all
    with pytest.raises(ValueError, match="parallel mode must be one of"):
        MoESettings(parallel="tensor")
    with pytest.raises(ValueError, match="microbatching must be one of"):
        MoESettings(microbatching="greedy")


def test_stage_factories_check_their_knobs_up_front():
    with pytest.raises(SpaceError, match="unknown settings \\['learning_rate'\\]"):
        moe_trainer(fixed={"learning_rate": 0.1})
    with pytest.raises(SpaceError, match="both searched and fixed"):
        moe_trainer(space={"lr": Float(1e-3, 1e-1)}, fixed={"lr": 0.1})
    with pytest.raises(SpaceError, match="top_k must be 1 or 2"):
        moe_trainer(fixed={"top_k": 3})
    with pytest.raises(SpaceError, match="unknown settings"):
        tokenize_stage(fixed={"vocab": 300})
    stage = moe_trainer()
    assert stage.ray_options == {"num_cpus": 0, "num_gpus": 0}  # its workers get the CPUs
    assert {"n_experts", "top_k", "capacity_factor", "aux_weight", "lr"} <= set(stage.space)
