"""A Mixture-of-Experts trainer: expert parallelism, FSSDP, overlapped all-to-all and
dynamic micro-batching, for a small MoE transformer language model.

- :mod:`.gating`, :mod:`.experts`, :mod:`.layer`, :mod:`.model`: top-k routing
  with capacity (GShard, Switch), expert FFNs, the MoE layer and the LM;
- :mod:`.dispatch`, :mod:`.comm`, :mod:`.deferred`, :mod:`.fssdp`: the parallel
  modes (replicated, expert-parallel all-to-all, Hecate's FSSDP) and Lancet's
  overlapped schedule;
- :mod:`.microbatch`, :mod:`.batching`: padding, packing and DynaPipe's
  dynamic micro-batching;
- :mod:`.corpus`, :mod:`.tokenizer`, :mod:`.dataset`: the offline multi-task
  corpus and its BPE tokenizer;
- :mod:`.trainer`, :mod:`.worker`, :mod:`.stage`: one worker's training loop, the
  Ray Train loop and the pipeline stages;
- :mod:`.local_group`: a few local processes in one process group, for tests
  and benchmarks.
"""

from .corpus import Corpus, Sample, build_corpus
from .dataset import TokenizedCorpus, tokenize_corpus
from .model import MoEConfig, MoELM
from .parallel import ParallelConfig, ParallelContext
from .settings import MoESettings
from .trainer import MoETrainer, TrainConfig

#: Names served by :mod:`.stage`, imported on first use (it brings in Ray).
_STAGE_NAMES = ("DEFAULT_SPACE", "TrainedMoE", "moe_trainer", "perplexity_stage", "tokenize_stage")


def __getattr__(name: str):
    if name in _STAGE_NAMES:
        from . import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_SPACE",
    "Corpus",
    "MoEConfig",
    "MoELM",
    "MoESettings",
    "MoETrainer",
    "ParallelConfig",
    "ParallelContext",
    "Sample",
    "TokenizedCorpus",
    "TrainConfig",
    "TrainedMoE",
    "build_corpus",
    "moe_trainer",
    "perplexity_stage",
    "tokenize_corpus",
    "tokenize_stage",
]
