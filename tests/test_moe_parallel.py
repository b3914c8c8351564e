"""The MoE parallel modes on 2 gloo processes: expert parallelism, FSSDP and the
overlapped schedule against a single-process reference with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn import functional as F

from memotune.stages.moe.batching import IGNORE
from memotune.stages.moe.dispatch import MoERuntime
from memotune.stages.moe.layer import MoELayer
from memotune.stages.moe.local_group import LocalGroup
from memotune.stages.moe.model import MoEConfig, MoELM, init_parameters
from memotune.stages.moe.parallel import ParallelConfig, ParallelContext
from memotune.stages.moe.trainer import MoETrainer, TrainConfig, step_samples, train

WORLD = 2
TOLERANCE = {"rtol": 1e-5, "atol": 1e-8}


def lm_config(top_k: int, capacity_factor: float | None = 1.0) -> MoEConfig:
    return MoEConfig(
        vocab_size=37,
        d_model=16,
        n_heads=2,
        n_layers=2,
        d_hidden=24,
        n_experts=4,
        top_k=top_k,
        capacity_factor=capacity_factor,
        max_len=32,
    )


def rank_batch(rank: int, vocab: int = 37) -> tuple[torch.Tensor, ...]:
    """Rank ``rank``'s micro-batch: a packed row, a full row and a padded row."""
    g = torch.Generator().manual_seed(1000 + rank)
    tokens = torch.randint(0, vocab, (3, 14), generator=g)
    segments = torch.zeros(3, 14, dtype=torch.long)
    segments[0, 6:] = 1
    segments[2, 9 + rank :] = -1
    positions = torch.arange(14).repeat(3, 1)
    positions[0, 6:] -= 6
    targets = torch.randint(0, vocab, (3, 14), generator=g)
    targets[segments < 0] = IGNORE
    return tokens, segments, positions, targets


def lm_loss(model: MoELM, tokens, segments, positions, targets) -> tuple[torch.Tensor, ...]:
    logits, aux = model(tokens, segments, positions)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return logits, nll + 0.1 * aux


def gradients(model: MoELM) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def reference(config: MoEConfig) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """One process, every expert: each rank's batch is its own routing group; the loss is
    the mean of the ranks' losses."""
    model = MoELM(config).double()
    init_parameters(model, seed=3)
    outputs = []
    for rank in range(WORLD):
        logits, loss = lm_loss(model, *rank_batch(rank))
        (loss / WORLD).backward()
        outputs.append(logits.detach())
    return outputs, gradients(model)


def forward_backward(config: MoEConfig, parallel: ParallelConfig) -> dict:
    """On each rank: the rank's batch through the sharded model, dense gradients summed."""
    context = ParallelContext.from_process_group(parallel)
    model = MoELM(config, context).double()
    init_parameters(model, seed=3)
    logits, loss = lm_loss(model, *rank_batch(context.rank))
    (loss / context.world).backward()
    model.runtime.queue.flush()
    synced = model.dense_parameters() if context.shards_experts else list(model.parameters())
    for param in synced:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
    stats = model.runtime.stats
    return {
        "rank": context.rank,
        "logits": logits.detach(),
        "grads": gradients(model),
        "experts": sorted(int(e) for e in model.blocks[0].moe.experts),
        "hot": list(model.runtime.hot_history),
        "transfers": stats.transfers,
    }


@pytest.fixture(scope="module")
def group():
    with LocalGroup(WORLD, timeout=60) as g:
        yield g


def check_against_reference(results: list[dict], config: MoEConfig) -> None:
    ref_outputs, ref_grads = reference(config)
    seen = set()
    for result in results:
        torch.testing.assert_close(result["logits"], ref_outputs[result["rank"]], **TOLERANCE)
        for name, grad in result["grads"].items():
            torch.testing.assert_close(grad, ref_grads[name], **TOLERANCE, msg=name)
            seen.add(name)
    assert seen == set(ref_grads)  # every parameter's gradient, each expert's on its owner
    expert_grads = [g for n, g in ref_grads.items() if ".experts." in n and n.endswith("w_in")]
    assert all(g.abs().max() > 1e-6 for g in expert_grads)  # every expert did real work


@pytest.mark.parametrize("top_k", [1, 2])
def test_expert_parallel_matches_single_process_reference(group, top_k):
    config = lm_config(top_k)
    results = group.run(forward_backward, config, ParallelConfig("expert_parallel"))
    assert [r["experts"] for r in results] == [[0, 1], [2, 3]]  # each rank holds its own
    check_against_reference(results, config)


def test_fssdp_matches_expert_parallelism_with_hot_experts_materialized(group):
    config = lm_config(top_k=2, capacity_factor=None)
    fssdp = group.run(forward_backward, config, ParallelConfig("fssdp", hot_factor=1.05))
    assert any(hot for hot in fssdp[0]["hot"])  # some expert was replicated to both ranks
    assert fssdp[0]["hot"] == fssdp[1]["hot"]
    ep = group.run(forward_backward, config, ParallelConfig("expert_parallel"))
    for a, b in zip(fssdp, ep, strict=True):
        torch.testing.assert_close(a["logits"], b["logits"], **TOLERANCE)
        assert a["grads"].keys() == b["grads"].keys()
        for name in a["grads"]:
            torch.testing.assert_close(a["grads"][name], b["grads"][name], **TOLERANCE, msg=name)
    check_against_reference(fssdp, config)


def test_overlapped_schedule_matches_plain(group):
    config = lm_config(top_k=2)
    plain = group.run(forward_backward, config, ParallelConfig("expert_parallel", chunks=1))
    overlapped = group.run(forward_backward, config, ParallelConfig("expert_parallel", chunks=3))
    # 2 layers x (dispatch + return) x chunks, forward and backward
    assert plain[0]["transfers"] == 2 * 2 * 1 * 2
    assert overlapped[0]["transfers"] == 2 * 2 * 3 * 2
    for a, b in zip(overlapped, plain, strict=True):
        torch.testing.assert_close(a["logits"], b["logits"], **TOLERANCE)
        assert a["grads"].keys() == b["grads"].keys()
        for name in a["grads"]:
            torch.testing.assert_close(a["grads"][name], b["grads"][name], **TOLERANCE, msg=name)
    check_against_reference(overlapped, config)


def schedule_trace(chunks: int) -> list[str]:
    """The communication schedule of one forward and backward pass of a 1-layer model."""
    context = ParallelContext.from_process_group(ParallelConfig("expert_parallel", chunks=chunks))
    config = MoEConfig(**{**lm_config(top_k=2).to_dict(), "n_layers": 1})
    model = MoELM(config, context).double()
    init_parameters(model, seed=3)
    model.runtime.stats.trace = []
    logits, loss = lm_loss(model, *rank_batch(context.rank))
    loss.backward()
    assert len(model.runtime.queue) == 0  # every deferred weight gradient already ran
    return list(model.runtime.stats.trace)


def test_overlapped_schedule_sends_the_next_chunk_before_computing_and_hides_weight_grads(group):
    trace = group.run(schedule_trace, 3)[0]
    forward = trace[: trace.index("wait return c2") + 1]
    assert forward == [
        "launch dispatch c0",
        "launch dispatch c1",  # in flight while chunk 0 computes
        "wait dispatch c0",
        "compute c0",
        "launch return c0",
        "launch dispatch c2",
        "wait dispatch c1",
        "compute c1",
        "launch return c1",
        "wait dispatch c2",
        "compute c2",
        "launch return c2",
        "wait return c0",
        "wait return c1",
        "wait return c2",
    ]
    backward = trace[len(forward) :]
    assert {f"launch grad dispatch c{c}" for c in range(3)} <= set(backward)
    # every expert weight gradient ran while a gradient all-to-all was in flight
    # (schedule_trace checked that none was left for after backward)
    hidden = [i for i, event in enumerate(backward) if event.startswith("weight grads during ")]
    assert len(hidden) >= 2
    for i in hidden:
        label = backward[i].removeprefix("weight grads during ")
        assert backward.index(f"launch grad {label}") < i < backward.index(f"wait grad {label}")
    plain = group.run(schedule_trace, 1)[0]
    assert not any(event.startswith("weight grads") for event in plain)
    assert plain[:5] == [
        "launch dispatch c0",
        "wait dispatch c0",
        "compute c0",
        "launch return c0",
        "wait return c0",
    ]


def corpus(n: int, seed: int, vocab: int = 37) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, int(rng.integers(2, 30))) for _ in range(n)]


def train_briefly(parallel: ParallelConfig, steps: int = 3, microbatching: str = "dynamic") -> dict:
    context = ParallelContext.from_process_group(parallel)
    settings = TrainConfig(
        steps=steps, batch_size=12, lr=1e-2, memory_cap_mb=0.5, dtype="float64",
        microbatching=microbatching,
    )  # fmt: skip
    trainer = MoETrainer(lm_config(top_k=2, capacity_factor=2.0), settings, context)
    run = train(trainer, corpus(48, seed=0), corpus(10, seed=1))
    return {
        "losses": [s.loss for s in run.history],
        "valid": run.valid["loss"],
        "state": trainer.full_state_dict(),
        "optimizer_experts": trainer.optimizer_experts(),
        "state_bytes": trainer.state_bytes(),
        "micro_batches": [s.micro_batches for s in run.history],
    }


def test_training_steps_agree_across_modes_and_fssdp_keeps_expert_state_on_owner(group):
    runs = {
        mode: group.run(train_briefly, ParallelConfig(mode, chunks=chunks, hot_factor=1.05))
        for mode, chunks in [("replicated", 1), ("expert_parallel", 2), ("fssdp", 2)]
    }
    base = runs["replicated"][0]
    for results in runs.values():
        for result in results:
            assert result["losses"] == pytest.approx(base["losses"], rel=1e-9)
            assert result["valid"] == pytest.approx(base["valid"], rel=1e-9)
            for name, value in base["state"].items():
                torch.testing.assert_close(result["state"][name], value, **TOLERANCE, msg=name)
    assert base["losses"][-1] < base["losses"][0]  # it learns
    # replicated: every rank keeps optimizer state for every expert
    assert [r["optimizer_experts"] for r in runs["replicated"]] == [[0, 1, 2, 3]] * 2
    # FSSDP (and EP): each expert's optimizer state on exactly one rank, its owner
    for mode in ("expert_parallel", "fssdp"):
        held = [r["optimizer_experts"] for r in runs[mode]]
        assert held == [[0, 1], [2, 3]]
        assert runs[mode][0]["state_bytes"] < runs["replicated"][0]["state_bytes"]


def resumed_training(parallel: ParallelConfig) -> dict:
    """3 steps straight, against 2 steps, a fresh trainer loading each rank's state, 1 step."""
    context = ParallelContext.from_process_group(parallel)
    settings = TrainConfig(steps=3, batch_size=12, lr=1e-2, memory_cap_mb=0.5, dtype="float64")
    config = lm_config(top_k=2, capacity_factor=2.0)
    data = corpus(48, seed=0)
    straight = MoETrainer(config, settings, context)
    train(straight, data)
    first = MoETrainer(config, settings, context)
    for step in range(2):  # stopped (killed) after two of the three steps
        share = step_samples(len(data), 12, settings.seed, step, context.rank, context.world)
        first.train_step([data[i] for i in share])
    state = first.rank_state()
    resumed = MoETrainer(config, settings, context)
    resumed.load_rank_state(state)
    run = train(resumed, data)
    return {
        "steps": [s.step for s in run.history],
        "straight": straight.full_state_dict(),
        "resumed": resumed.full_state_dict(),
    }


def test_a_trainer_resumes_from_each_ranks_saved_state(group):
    for result in group.run(resumed_training, ParallelConfig("fssdp", chunks=2, hot_factor=1.05)):
        assert result["steps"] == [3]
        for name, value in result["straight"].items():
            torch.testing.assert_close(result["resumed"][name], value, **TOLERANCE, msg=name)


def uneven_shares(parallel: ParallelConfig) -> dict:
    """Rank 1 gets no samples at all: it must still join every all-to-all."""
    context = ParallelContext.from_process_group(parallel)
    settings = TrainConfig(steps=1, batch_size=8, memory_cap_mb=0.5, dtype="float64")
    trainer = MoETrainer(lm_config(top_k=1), settings, context)
    samples = corpus(8, seed=2) if context.rank == 0 else []
    return {"loss": trainer.train_step(samples).loss, "rows": trainer.runtime.expert_rows}


@pytest.mark.parametrize("mode", ["expert_parallel", "fssdp"])
def test_a_rank_with_no_samples_still_joins_the_exchange(group, mode):
    results = group.run(uneven_shares, ParallelConfig(mode, chunks=2))
    assert results[0]["loss"] == pytest.approx(results[1]["loss"])
    assert results[0]["loss"] > 0


def skewed_layer_load(parallel: ParallelConfig, tokens: int = 512) -> list[int]:
    """Expert rows each rank computes when most tokens prefer expert 0."""
    context = ParallelContext.from_process_group(parallel)
    runtime = MoERuntime(context)
    layer = MoELayer(16, 24, 4, top_k=1, capacity_factor=None, runtime=runtime).double()
    init_parameters(layer, seed=5)
    g = torch.Generator().manual_seed(context.rank)
    direction = torch.ones(16, dtype=torch.float64) / 4
    x = torch.randn(tokens, 16, generator=g, dtype=torch.float64) + direction
    with torch.no_grad():
        layer.router.proj.weight[0] += 3 * direction  # expert 0 is the favourite
        out, _ = layer(x)
    rows = torch.tensor([runtime.expert_rows])
    gathered = [torch.zeros_like(rows) for _ in range(context.world)]
    dist.all_gather(gathered, rows)
    return [int(r) for r in gathered]


def test_fssdp_hot_expert_replication_lowers_load_imbalance(group):
    ep = group.run(skewed_layer_load, ParallelConfig("expert_parallel"))[0]
    fssdp = group.run(skewed_layer_load, ParallelConfig("fssdp", hot_factor=1.5))[0]
    assert sum(ep) == sum(fssdp) == 2 * 512  # top-1, nothing dropped: every token computed once

    def imbalance(rows):
        return max(rows) / (sum(rows) / len(rows))

    assert imbalance(ep) > 1.4  # the favourite's owner is a straggler
    assert imbalance(fssdp) < imbalance(ep)
    assert imbalance(fssdp) < 1.2
