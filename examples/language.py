"""Language: tokenizer → transformer teacher → three rounds of distillation → perplexity.

Runs on Python's own reference documentation (``pydoc_data.topics``, about
465k characters, shipped with CPython), each trial in one process with torch
on one thread:

    memotune tune examples/language.py --tuner eeipu --budget 120

- ``tokenize`` (cheap): a byte-level BPE tokenizer, its vocabulary size;
- ``teacher`` (the dear stage, about 1–4 s): a 2–3 layer transformer LM
  trained from scratch, its learning rate, steps and depth;
- ``distill_1`` → ``distill_2`` → ``distill_3`` (about 0.2–0.5 s each): a
  one-layer student cut from the teacher (DistilBERT's initialisation), then
  distilled in three chained rounds, each with its own learning rate,
  temperature and weight decay;
- ``evaluate`` (cheap): the student's validation perplexity per byte.

The objective, ``byte_perplexity`` (minimized), does not depend on the
vocabulary, so tokenizers compare fairly. Configurations that share the
tokenizer and teacher settings share the trained teacher; those that also
share early distillation rounds share those too.
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

tokenize = tokenize_stage(space={"vocab_size": Int(260, 600, log=True)})
teacher = teacher_stage(
    space={
        "lr": Float(2e-3, 3e-2, log=True),
        "steps": Int(30, 90),
        "n_layers": Int(2, 3),
    },
    fixed={"d_model": 64, "n_heads": 4, "context": 32, "batch_size": 16},
)
distill = [
    distill_stage(
        space=DISTILL_SPACE,  # lr, temperature, weight_decay
        fixed={"layers": 1, "steps": 10, "batch_size": 16, "alpha": 0.5},
        name=f"distill_{round_}",
    )
    for round_ in (1, 2, 3)
]

pipeline = Pipeline(
    [tokenize, teacher, *distill, perplexity_stage()],
    objective="byte_perplexity",
    direction="minimize",
    inputs=pydoc_text(),
    name="language",
)
