"""What a data-parallel trainer stage costs on Ray Train: fixed start-up and seconds per epoch.

Trains the digits CNN of ``examples/digits_cnn.py`` with the ``ddp_trainer``
stage on 1 and 2 workers (gloo on CPU; NCCL with ``--gpu``, one GPU per
worker, so on a machine with one GPU only the 1-worker runs), ``--repeats``
runs each, with one checkpoint at the end. Per run, the stage reports the
run's wall-clock seconds and each epoch's seconds (training and validation)
measured on rank 0; the run's fixed start-up is the rest (Ray Train's
controller, the worker group and its process group, model set-up, the final
checkpoint, tear-down). Figures are medians over the runs (per-epoch figures
over all their epochs):

- ``startup_seconds``: fixed start-up per stage run, over all runs;
- ``startup_seconds_1``, ``startup_seconds_2``: the same per worker count;
- ``epoch_seconds_1``, ``epoch_seconds_2``: seconds per epoch on 1 and 2 workers;
- ``ray_init_seconds``: starting Ray itself, paid once per process;
- ``load_average``: the machine's 1-minute load average at the end (other
  work on the machine inflates every figure);
- with ``--gpu``: ``gpus``, the GPUs' names, and ``not_measured``, the worker
  counts left out for want of GPUs and why (their figures are null).

    python benchmarks/ddp.py --json out/ddp.json
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import ray
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune.loading import import_file  # noqa: E402
from memotune.stages.distributed import ddp_trainer  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.py"
WORKER_COUNTS = (1, 2)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="runs per worker count (default 2)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    p.add_argument("--batch-size", type=int, default=64, help="global batch (default 64)")
    p.add_argument(
        "--gpu", action="store_true", help="one GPU per worker (NCCL), as many workers as GPUs"
    )
    args = p.parse_args()
    gpus = torch.cuda.device_count() if args.gpu else 0
    if args.gpu and not gpus:
        p.error("--gpu needs a GPU, found none")
    counts = [n for n in WORKER_COUNTS if not args.gpu or n <= gpus]

    example = import_file(EXAMPLE)
    data = example.preprocess(example.load_splits(), normalize="scale", augment="none")
    stage = ddp_trainer(
        example.SmallCNN,
        torch.nn.functional.cross_entropy,
        metrics=example.accuracy,
        space={},
        fixed={"epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.01},
        gpus_per_worker=1.0 if args.gpu else 0.0,
        checkpoint_every=args.epochs,
    )
    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    ray_init = time.perf_counter() - started

    startup: dict[int, list[float]] = {n: [] for n in WORKER_COUNTS}
    epoch: dict[int, list[float]] = {n: [] for n in WORKER_COUNTS}
    for repeat in range(args.repeats):
        for workers in counts:
            trained = stage(data, num_workers=workers).value
            seconds = [row["epoch_seconds"] for row in trained.history]
            startup[workers].append(trained.metrics["ray_train_seconds"] - sum(seconds))
            epoch[workers] += seconds
            print(
                f"run {repeat + 1}/{args.repeats}, {workers} worker(s): "
                f"{trained.metrics['ray_train_seconds']:.1f} s, start-up "
                f"{startup[workers][-1]:.1f} s, {statistics.median(seconds):.3f} s/epoch, "
                f"val accuracy {trained.metrics['val_accuracy']:.3f}",
                flush=True,
            )
    ray.shutdown()

    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    figures = {
        "startup_seconds": statistics.median([s for n in counts for s in startup[n]]),
        **{f"startup_seconds_{n}": median(startup[n]) for n in WORKER_COUNTS},
        **{f"epoch_seconds_{n}": median(epoch[n]) for n in WORKER_COUNTS},
        "ray_init_seconds": ray_init,
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "backend": "nccl" if args.gpu else "gloo",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_samples": len(data["train"][0]),
        "repeats": args.repeats,
    }
    if args.gpu:
        figures["gpus"] = [torch.cuda.get_device_name(i) for i in range(gpus)]
    if skipped := [n for n in WORKER_COUNTS if n not in counts]:
        figures["not_measured"] = (
            f"{', '.join(map(str, skipped))} worker(s): NCCL needs one GPU per worker, found {gpus}"
        )
    report(figures, args.json)
    if not args.gpu:
        note = "with NCCL: rerun with --gpu" if torch.cuda.is_available() else "no GPU here"
        print(f"CPU figures (gloo); {note}")


if __name__ == "__main__":
    main()
