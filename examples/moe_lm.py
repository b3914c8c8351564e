"""A Mixture-of-Experts language model: tokenize → pre-train on Ray Train → evaluate perplexity.

The corpus is Python's own reference documentation (``pydoc_data.topics``),
cut offline into four tasks of very different lengths (sentences,
paragraphs, code blocks, sections). Tune it with EEIPU:

    memotune tune examples/moe_lm.py --tuner eeipu --budget 900

- ``tokenize`` trains a byte-level BPE tokenizer (``vocab_size`` is searched);
  configurations that share it share the tokenized corpus.
- ``pretrain`` trains the MoE transformer with 2 Ray Train workers; experts,
  top-k, capacity factor, aux-loss weight, learning rate, the parallel mode
  (expert parallelism or FSSDP), Lancet's overlap chunks and the
  micro-batching (padding, packing, DynaPipe's dynamic) are searched. The
  last three change what a trial costs, not what it learns (up to capacity
  drops), which is what a cost-aware tuner can exploit.
- ``evaluate`` reports validation perplexity per token, per byte and per
  task. The objective is the per-byte perplexity: unlike the per-token one it
  compares models trained on different vocabularies.

Every trial pays Ray Train's start-up (20–60 s on a 2-CPU machine).
"""

from memotune import Choice, Float, Int, Pipeline
from memotune.stages.moe import build_corpus, moe_trainer, perplexity_stage, tokenize_stage

tokenize = tokenize_stage(space={"vocab_size": Int(300, 1024, log=True)}, fixed={"max_tokens": 128})

pretrain = moe_trainer(
    space={
        "n_experts": Choice([2, 4, 8]),
        "top_k": Choice([1, 2]),
        "capacity_factor": Float(1.0, 2.0),
        "aux_weight": Float(1e-3, 1e-1, log=True),
        "lr": Float(1e-3, 3e-2, log=True),
        "parallel": Choice(["expert_parallel", "fssdp"]),
        "overlap_chunks": Choice([1, 2]),
        "microbatching": Choice(["padding", "packing", "dynamic"]),
    },
    fixed={
        "d_model": 64,
        "n_heads": 4,
        "n_layers": 2,
        "d_hidden": 128,
        "steps": 60,
        "batch_size": 32,
        "warmup_steps": 5,
        "num_workers": 2,
    },
)

evaluate = perplexity_stage()

pipeline = Pipeline(
    [tokenize, pretrain, evaluate],
    objective="byte_perplexity",
    direction="minimize",
    inputs=build_corpus(),
    name="moe-lm",
)
