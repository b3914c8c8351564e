"""Language: tokenizer → transformer teacher → three rounds of distillation → perplexity.

Runs on Python's own reference documentation (``pydoc_data.topics``, about
465k characters, shipped with CPython), split once by whole topics into
training (about 309k characters), validation (28k) and test text (80k);
paragraphs that recur across topics are kept in the first split only. Each
trial runs in one process with torch on one thread:

    memotune tune examples/language.py --tuner eeipu --budget 120

- ``tokenize`` (about 0.3–0.8 s): a byte-level BPE tokenizer trained on the
  training text, its vocabulary size;
- ``teacher`` (the dear stage, about 0.4–2.6 s): a 2–3 layer transformer LM
  trained from scratch, its learning rate, steps and depth;
- ``distill_1`` → ``distill_2`` → ``distill_3`` (about 0.1–0.3 s each): a
  one-layer student cut from the teacher (DistilBERT's initialisation), then
  distilled in three chained rounds, each with its own learning rate,
  temperature and weight decay;
- ``evaluate`` (about 0.2–0.3 s): the student's perplexity per byte on the
  validation and the test text.

A full trial takes about 1.4–3.7 s. The objective, ``byte_perplexity``
(validation, minimized), does not depend on the vocabulary, so tokenizers
compare fairly; the test metric, ``test_byte_perplexity``, is the same on the
test text, which nothing is trained on and the tuner never sees.
Configurations that share the tokenizer and teacher settings share the
trained teacher; those that also share early distillation rounds share those
too.

``examples/language.py:steps`` is the same pipeline with the teacher's steps as
a fidelity, for early stopping and for continuing training from the cache;
``examples/language.py:grown`` grows its 3-layer teachers from the 2-layer ones.
"""

from memotune import Float, Int, Pipeline
from memotune.stages.text import (
    DISTILL_SPACE,
    distill_stage,
    perplexity_stage,
    pydoc_text,
    teacher_stage,
    tokenize_stage,
)

TEACHER_SPACE = {
    "lr": Float(2e-3, 3e-2, log=True),
    "steps": Int(30, 90),
    "n_layers": Int(2, 3),
}
TEACHER_FIXED = {"d_model": 64, "n_heads": 4, "context": 32, "batch_size": 16}
TEXT = pydoc_text(valid_fraction=0.1, test_fraction=0.1)

tokenize = tokenize_stage(space={"vocab_size": Int(260, 600, log=True)})
teacher = teacher_stage(space=TEACHER_SPACE, fixed=TEACHER_FIXED)
distill = [
    distill_stage(
        space=DISTILL_SPACE,  # lr, temperature, weight_decay
        fixed={"layers": 1, "steps": 10, "batch_size": 16, "alpha": 0.5},
        name=f"distill_{round_}",
    )
    for round_ in (1, 2, 3)
]


def language(teacher, name):
    """Tokenizer → ``teacher`` → three rounds of distillation → perplexity."""
    return Pipeline(
        [tokenize, teacher, *distill, perplexity_stage()],
        objective="byte_perplexity",
        direction="minimize",
        inputs=TEXT,
        name=name,
        test_metric="test_byte_perplexity",
    )


pipeline = language(teacher, "language")

#: The same pipeline with the teacher's ``steps`` as its fidelity: its learning rate
#: follows the 90-step schedule whatever its steps (a shorter run is the start of a
#: longer one), it keeps a checkpoint every 10 steps, and at the pruner's rungs it
#: reports its validation perplexity per byte and asks whether to stop; a trial with more
#: steps goes on from a cached teacher's checkpoint. ``memotune tune
#: examples/language.py:steps --prune valid_byte_perplexity``
steps = language(
    teacher_stage(space=TEACHER_SPACE, fixed=TEACHER_FIXED, fidelity=True), "language-steps"
)

#: ``steps`` with deeper teachers grown from shallower ones: a teacher trains with two
#: layers and, if it has three, gains the third after 30 steps with its function
#: preserved (LEMON's depth expansion), so a 3-layer teacher starts from the cached
#: state of the 2-layer teacher of the same settings and pays only for its last steps.
#: ``memotune tune examples/language.py:grown --prune valid_byte_perplexity``
grown = language(
    teacher_stage(space=TEACHER_SPACE, fixed=TEACHER_FIXED, fidelity=True, grow_every=30),
    "language-grown",
)
