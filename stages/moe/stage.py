"""Pipeline stages: tokenize the corpus, pre-train the MoE LM on Ray Train, evaluate perplexity.

- :func:`tokenize_stage`: trains the BPE tokenizer on a :class:`~.corpus.Corpus`
  and encodes it (knobs: ``vocab_size``, ``max_tokens``).
- :func:`moe_trainer`: trains the MoE language model with ``num_workers`` Ray
  Train workers through the data-parallel trainer's worker-group machinery
  (:func:`memotune.stages.distributed.launch`); every :class:`MoESettings`
  field is a knob. Its own Ray task asks for no CPUs or GPUs, so it never
  holds what its workers need when it runs nested in memotune's Ray runner.
- :func:`perplexity_stage`: validation perplexity of the trained model in one
  process (no token dropped), per token, per byte (comparable across
  vocabularies) and per task.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memotune.pipelines import (
    Choice,
    Float,
    Int,
    Output,
    Param,
    SpaceError,
    Stage,
    StageContext,
    check_settings,
    factory_version,
    scratch_folder,
)
from memotune.stages.distributed import WorkerResources, launch

from .corpus import TASKS, Corpus
from .dataset import TokenizedCorpus, tokenize_corpus
from .model import MoEConfig, MoELM
from .settings import MoESettings
from .trainer import MoETrainer, TrainConfig
from .worker import MoEJob, moe_train_loop

#: The trainer's search space when none is given.
DEFAULT_SPACE: dict[str, Param] = {
    "n_experts": Choice([2, 4, 8]),
    "top_k": Choice([1, 2]),
    "capacity_factor": Float(1.0, 2.0),
    "aux_weight": Float(1e-3, 1e-1, log=True),
    "lr": Float(1e-3, 2e-2, log=True),
}


@dataclass
class TrainedMoE:
    """What the trainer stage hands downstream (and the cache stores)."""

    state_dict: dict[str, torch.Tensor]
    """Every parameter, experts gathered from their owners, on the CPU."""
    model: dict[str, Any]
    """The :class:`MoEConfig` as a dict."""
    settings: dict[str, Any]
    history: list[dict[str, float]]
    """One row per step: loss, aux_loss, lr, seconds, communication wait, ..."""
    metrics: dict[str, float]
    data: TokenizedCorpus
    resumed_from: list[int] = field(default_factory=list)

    def build(self) -> MoELM:
        """The trained model in one process (all experts), in eval mode."""
        model = MoELM(MoEConfig(**self.model))
        model.load_state_dict(self.state_dict)
        return model.eval()


def tokenize_stage(
    *,
    space: dict[str, Param] | None = None,
    fixed: dict[str, Any] | None = None,
    name: str = "tokenize",
) -> Stage:
    """A stage that trains the BPE tokenizer on the corpus and encodes both splits."""
    fixed = dict(fixed or {})
    space = dict(space if space is not None else {"vocab_size": Int(300, 1024, log=True)})
    check_settings(name, space, fixed, known={"vocab_size", "max_tokens"})

    def tokenize(corpus: Corpus, **params: Any) -> TokenizedCorpus:
        chosen = {"max_tokens": 256, **fixed, **params}
        if not isinstance(corpus, Corpus):
            raise TypeError(
                f"stage '{name}': the upstream must be a Corpus, got {type(corpus).__name__}"
            )
        return tokenize_corpus(corpus, int(chosen["vocab_size"]), int(chosen["max_tokens"]))

    version = factory_version(_modules(TOKENIZE_MODULES), fixed)
    return Stage(tokenize, space=space, name=name, version=version, num_cpus=1)


def moe_trainer(
    *,
    space: dict[str, Param] | None = None,
    fixed: dict[str, Any] | None = None,
    name: str = "pretrain",
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    max_failures: int = 1,
) -> Stage:
    """A stage that pre-trains the MoE language model on Ray Train workers.

    ``space`` (default :data:`DEFAULT_SPACE` less the fixed names) and ``fixed``
    may name any :class:`MoESettings` field: model shape (d_model, n_layers,
    n_experts, top_k, capacity_factor, ...), ``parallel`` (replicated,
    expert_parallel, fssdp), ``overlap_chunks``, ``hot_factor``,
    ``microbatching`` (padding, packing, dynamic), ``num_workers``, ``lr``,
    ``steps``, ``batch_size``, ``aux_weight``, ... Each worker asks Ray for
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (GPUs mean NCCL).
    A worker that dies restarts the group from the last checkpoint, up to
    ``max_failures`` times.
    """
    fixed = dict(fixed or {})
    if space is None:
        space = {k: v for k, v in DEFAULT_SPACE.items() if k not in fixed}
    space = dict(space)
    check_settings(name, space, fixed, known=MoESettings.names())
    try:  # fail now on bad fixed values and resource numbers
        MoESettings(**fixed)
        WorkerResources(1, cpus_per_worker, gpus_per_worker)
    except ValueError as error:
        raise SpaceError(f"stage '{name}': {error}") from None

    def pretrain(
        data: TokenizedCorpus, *, context: StageContext | None = None, **params: Any
    ) -> Output:
        if not isinstance(data, TokenizedCorpus):
            raise TypeError(
                f"stage '{name}': the upstream must be a TokenizedCorpus, got {type(data).__name__}"
            )
        try:
            settings = MoESettings(**{**fixed, **params})
        except ValueError as error:
            raise ValueError(f"stage '{name}': {error}") from None
        with scratch_folder(context, "memotune-moe-") as workdir:
            run = launch(
                moe_train_loop,
                {"job": MoEJob(settings, data)},
                storage=Path(workdir) / "ray-train",
                num_workers=settings.num_workers,
                cpus_per_worker=cpus_per_worker,
                gpus_per_worker=gpus_per_worker,
                name=name,
                max_failures=max_failures,
            )
        out = run.value
        history = out["history"]
        metrics = {
            "train_loss": history[-1]["loss"],
            "valid_loss": out["valid"]["loss"],
            "valid_perplexity": out["valid"]["perplexity"],
            "step_seconds": float(np.median([row["seconds"] for row in history])),
            "comm_wait_seconds": float(np.median([row["comm_wait_seconds"] for row in history])),
            "state_bytes_per_rank": float(max(out["state_bytes"])),
            "restarts": float(len(out["resumed_from"])),
            "ray_train_overhead_seconds": run.seconds - out["loop_seconds"],
        }
        if context is not None:
            for row in history:
                context.report(int(row["step"]), **{k: v for k, v in row.items() if k != "step"})
        trained = TrainedMoE(
            state_dict=run.state["model"],
            model=settings.model_config(data.vocab_size, data.max_tokens).to_dict(),
            settings=settings.to_dict(),
            history=history,
            metrics=metrics,
            data=data,
            resumed_from=list(out["resumed_from"]),
        )
        return Output(trained, metrics=metrics)

    version = factory_version(_modules(TRAIN_MODULES), fixed)
    return Stage(pretrain, space=space, name=name, version=version, num_cpus=0, num_gpus=0)


def perplexity_stage(*, name: str = "evaluate", memory_cap_mb: float = 64.0) -> Stage:
    """A stage that returns the trained model's validation perplexity (and per byte, per task)."""

    def evaluate(trained: TrainedMoE) -> dict[str, float]:
        return validation_metrics(trained, memory_cap_mb)

    version = factory_version(_modules(TRAIN_MODULES), {"memory_cap_mb": memory_cap_mb})
    return Stage(evaluate, space={}, name=name, version=version)


def validation_metrics(trained: TrainedMoE, memory_cap_mb: float = 64.0) -> dict[str, float]:
    """Loss and perplexity over the validation split, overall and per task, dropping no token.

    ``byte_perplexity`` is ``exp(total loss / bytes predicted)``: unlike the
    per-token figure it does not depend on the vocabulary, so it compares
    tokenizers too."""
    data = trained.data
    trainer = MoETrainer(
        MoEConfig(**trained.model),
        TrainConfig(microbatching="dynamic", memory_cap_mb=memory_cap_mb),
    )
    trainer.model.load_state_dict(trained.state_dict)
    metrics: dict[str, float] = {}
    nll, tokens = 0.0, 0.0
    for task in TASKS:  # no token is dropped, so grouping by task changes no prediction
        subset = [s for s, t in zip(data.valid, data.valid_tasks, strict=True) if t == task]
        if subset:
            result = trainer.evaluate(subset)
            metrics[f"perplexity_{task}"] = result["perplexity"]
            nll += result["loss"] * result["tokens"]
            tokens += result["tokens"]
    widths = data.tokenizer.token_bytes()
    predicted_bytes = sum(int(widths[sample[1:]].sum()) for sample in data.valid)
    return {
        "loss": nll / tokens,
        "perplexity": math.exp(nll / tokens),
        "byte_perplexity": math.exp(nll / predicted_bytes),
        "train_loss": trained.metrics["train_loss"],
        **metrics,
    }


#: The modules whose code each stage's output depends on (editing one invalidates it).
TOKENIZE_MODULES = ("corpus", "tokenizer", "dataset")
TRAIN_MODULES = (
    *TOKENIZE_MODULES, "gating", "experts", "deferred", "comm", "parallel", "dispatch", "fssdp",
    "layer", "model", "microbatch", "batching", "trainer", "settings", "worker", "stage",
)  # fmt: skip


def _modules(names: tuple[str, ...]) -> list[Any]:
    return [importlib.import_module(f"{__package__}.{m}") for m in names]
