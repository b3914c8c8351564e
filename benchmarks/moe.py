"""The MoE trainer's systems figures, from one run on this machine (2 gloo processes on CPU).

- ``compute_per_useful``: the compute of each micro-batching plan of the
  tokenized training corpus under the cost model (linear terms and attention's
  quadratic term over whole rows), divided by the compute of the samples alone.
- ``step_seconds``: median expert-parallel training step, plain vs Lancet's
  overlapped schedule (the two trainers alternate steps, so load drifts hit
  both alike; slowest rank). Per step, ``comm_wait_seconds`` is the time the
  host sat blocked on all-to-alls (communication not hidden),
  ``comm_in_flight_seconds`` the time some all-to-all was in flight, and
  ``comm_hidden_seconds`` their difference: communication that ran while the
  host computed.
- ``state_bytes_per_rank``: parameter plus optimizer-state bytes (largest rank).
- ``load_imbalance``: under skewed routing (most tokens prefer one expert;
  no capacity limit), the busiest rank's expert rows divided by the mean.

With ``--device cpu`` or ``--device cuda``, one rank holding every expert
trains on the whole global batch on that device instead, and the 2-rank
figures above are not measured (on GPUs they need one GPU per rank, NCCL):

- ``one_rank_step_seconds``: median training step per micro-batching plan
  (the same samples for each plan; timed from and to an idle device).

    python benchmarks/moe.py --json out/moe.json
    python benchmarks/moe.py --device cuda --json out/moe_cuda.json
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune.stages.moe.corpus import build_corpus  # noqa: E402
from memotune.stages.moe.dataset import tokenize_corpus  # noqa: E402
from memotune.stages.moe.dispatch import MoERuntime  # noqa: E402
from memotune.stages.moe.layer import MoELayer  # noqa: E402
from memotune.stages.moe.local_group import LocalGroup  # noqa: E402
from memotune.stages.moe.microbatch import MODES, compute_per_useful, make_plan  # noqa: E402
from memotune.stages.moe.model import MoEConfig, init_parameters  # noqa: E402
from memotune.stages.moe.parallel import ParallelConfig, ParallelContext  # noqa: E402
from memotune.stages.moe.trainer import MoETrainer, TrainConfig, step_samples  # noqa: E402

WORLD = 2
VOCAB = 512
MAX_TOKENS = 256
STEPS = 12  # timed steps per schedule, after WARMUP
WARMUP = 2


def model_config(vocab_size: int) -> MoEConfig:
    return MoEConfig(
        vocab_size=vocab_size, d_model=128, n_heads=4, n_layers=2, d_hidden=512,
        n_experts=8, top_k=2, capacity_factor=1.25, max_len=MAX_TOKENS,
    )  # fmt: skip


TRAIN = TrainConfig(steps=100, batch_size=32, lr=1e-3, microbatching="dynamic", memory_cap_mb=48)


def plan_figures(data) -> dict:
    """Plans of the whole training corpus under the trainer's cost model and memory cap."""
    trainer = MoETrainer(model_config(data.vocab_size), TRAIN)
    lengths = data.lengths()
    plans = {mode: make_plan(mode, lengths, trainer.cost, trainer.memory_cap) for mode in MODES}
    return {
        "compute_per_useful": {
            m: compute_per_useful(p, lengths, trainer.cost) for m, p in plans.items()
        },
        "micro_batches": {m: len(p.micro_batches) for m, p in plans.items()},
        "memory_cap_mb": TRAIN.memory_cap_mb,
    }


def time_schedules(data, chunks: int) -> dict:
    """On each rank: alternate steps of a plain and an overlapped expert-parallel trainer."""
    trainers = {
        name: MoETrainer(
            model_config(data.vocab_size),
            TRAIN,
            ParallelContext.from_process_group(ParallelConfig("expert_parallel", chunks=c)),
        )
        for name, c in (("plain", 1), ("overlapped", chunks))
    }
    rank, world = dist.get_rank(), dist.get_world_size()
    seconds = {name: [] for name in trainers}
    waits = {name: [] for name in trainers}
    in_flight = {name: [] for name in trainers}
    for step in range(WARMUP + STEPS):
        share = step_samples(len(data.train), TRAIN.batch_size, 0, step, rank, world)
        samples = [data.train[i] for i in share]
        for name, trainer in trainers.items():
            dist.barrier()
            stats = trainer.train_step(samples)
            if step >= WARMUP:
                seconds[name].append(stats.seconds)
                waits[name].append(stats.comm_wait_seconds)
                in_flight[name].append(stats.comm_in_flight_seconds)
    return {
        "step_seconds": {n: statistics.median(s) for n, s in seconds.items()},
        "comm_wait_seconds": {n: statistics.median(w) for n, w in waits.items()},
        "comm_in_flight_seconds": {n: statistics.median(f) for n, f in in_flight.items()},
    }


def state_bytes(data, mode: str) -> int:
    """Bytes of parameters and optimizer state on this rank after one step."""
    parallel = ParallelConfig(mode)
    trainer = MoETrainer(
        model_config(data.vocab_size), TRAIN, ParallelContext.from_process_group(parallel)
    )
    share = step_samples(
        len(data.train), TRAIN.batch_size, 0, 0, dist.get_rank(), dist.get_world_size()
    )
    trainer.train_step([data.train[i] for i in share])
    return trainer.state_bytes()


def skewed_load(mode: str, tokens: int = 4096) -> dict:
    """Expert rows on this rank for one MoE layer whose router prefers expert 0 (then 1)."""
    context = ParallelContext.from_process_group(ParallelConfig(mode, hot_factor=1.5))
    runtime = MoERuntime(context)
    d_model, n_experts = 64, 8
    layer = MoELayer(d_model, 256, n_experts, top_k=2, capacity_factor=None, runtime=runtime)
    init_parameters(layer, seed=0)
    generator = torch.Generator().manual_seed(context.rank)
    direction = torch.ones(d_model) / d_model**0.5
    x = torch.randn(tokens, d_model, generator=generator) + direction
    with torch.no_grad():
        layer.router.proj.weight[0] += 2.0 * direction
        layer.router.proj.weight[1] += 1.0 * direction
        layer(x)
    return {
        "rows": runtime.expert_rows,
        "hot": runtime.hot_history[0] if runtime.hot_history else [],
        "replica_peak": runtime.replica_bytes_peak,
    }


def imbalance(rows: list[int]) -> float:
    return max(rows) / (sum(rows) / len(rows))


def one_rank_figures(data, device: str) -> dict:
    """One rank, every expert, the whole global batch: the median step of each plan."""
    seconds = {}
    for mode in MODES:
        trainer = MoETrainer(
            model_config(data.vocab_size), replace(TRAIN, microbatching=mode), device=device
        )
        times = []
        for step in range(WARMUP + STEPS):
            share = step_samples(len(data.train), TRAIN.batch_size, 0, step, 0, 1)
            if device == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            trainer.train_step([data.train[i] for i in share])
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - began)
        seconds[mode] = statistics.median(times[WARMUP:])
    return {
        "one_rank_step_seconds": seconds,
        "not_measured": "the 2-rank figures: expert parallelism needs 2 ranks "
        "(one GPU each with NCCL); run without --device for them on CPU (gloo)",
        "setup": {
            "world": 1,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "threads": 1,
            "model": model_config(data.vocab_size).to_dict(),
            "batch_size": TRAIN.batch_size,
            "timed_steps": STEPS,
        },
    }


def two_rank_figures(data, chunks: int) -> dict:
    """The expert-parallel figures from 2 gloo processes on CPU."""
    with LocalGroup(WORLD, timeout=300) as group:
        print("timing plain and overlapped expert-parallel steps ...", flush=True)
        timing = group.run(time_schedules, data, chunks)
        print("measuring state bytes and load imbalance ...", flush=True)
        states = {
            mode: group.run(state_bytes, data, mode)
            for mode in ("replicated", "expert_parallel", "fssdp")
        }
        loads = {mode: group.run(skewed_load, mode) for mode in ("expert_parallel", "fssdp")}
    schedules = ("plain", "overlapped")

    def slowest(key: str) -> dict:
        return {n: max(t[key][n] for t in timing) for n in schedules}

    wait, in_flight = slowest("comm_wait_seconds"), slowest("comm_in_flight_seconds")
    return {
        "step_seconds": slowest("step_seconds"),
        "comm_wait_seconds": wait,
        "comm_in_flight_seconds": in_flight,
        "comm_hidden_seconds": {n: max(0.0, in_flight[n] - wait[n]) for n in schedules},
        "state_bytes_per_rank": {m: max(r for r in s) for m, s in states.items()},
        "load_imbalance": {m: imbalance([r["rows"] for r in s]) for m, s in loads.items()},
        "expert_rows_per_rank": {m: [r["rows"] for r in s] for m, s in loads.items()},
        "fssdp_hot_experts": loads["fssdp"][0]["hot"],
        "fssdp_replica_peak_bytes": max(r["replica_peak"] for r in loads["fssdp"]),
        "setup": {
            "world": WORLD,
            "backend": "gloo (CPU)",
            "threads_per_rank": 1,
            "model": {k: v for k, v in model_config(data.vocab_size).to_dict().items()},
            "batch_size": TRAIN.batch_size,
            "overlap_chunks": chunks,
            "timed_steps": STEPS,
        },
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--chunks", type=int, default=2, help="overlap chunks of the overlapped schedule"
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        help="time one rank on this device instead of the 2-process figures",
    )
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda needs a GPU, found none")
    began = time.perf_counter()
    torch.set_num_threads(1)
    print("tokenizing the corpus ...", flush=True)
    data = tokenize_corpus(build_corpus(), VOCAB, MAX_TOKENS)
    print("planning micro-batches ...", flush=True)
    figures = plan_figures(data)
    if args.device:
        print(f"timing one rank's steps on {args.device} ...", flush=True)
        figures |= one_rank_figures(data, args.device)
    else:
        figures |= two_rank_figures(data, args.chunks)
    figures["benchmark_seconds"] = time.perf_counter() - began
    report(figures, args.json)


if __name__ == "__main__":
    main()
