"""What growing a deeper teacher from a cached shallower one saves (LEMON).

The language example's teachers, on its data, over a grid of settings
(learning rate × vocabulary), each in a fresh cache: first the 2-layer
teacher of 90 steps (what a sweep would have cached already), then the
3-layer teacher of 90 steps of ``examples/language.py:grown``, which trains
two layers for 30 steps and then grows a third with its function preserved,
and so starts from the 2-layer teacher's checkpoint at step 30; and, in a
cache of its own, the 3-layer teacher of ``examples/language.py:steps``
trained from scratch. Each is followed by the same three rounds of
distillation. Per setting: the teacher's seconds (run here, and what it
would cost from scratch), its validation perplexity per byte, and the
objective (the distilled student's). One process, torch on one thread.

    python benchmarks/growth.py --json docs/bench/growth.json
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import parser, report  # noqa: E402

from memotune import StageCache, run  # noqa: E402
from memotune.bench import provenance  # noqa: E402
from memotune.loading import load_pipeline  # noqa: E402

EXAMPLE = Path(__file__).parent.parent / "examples" / "language.py"
DISTILL = {"lr": 3e-3, "temperature": 2.0, "weight_decay": 0.01}


def setting(lr: float, vocab: int, layers: int) -> dict:
    return {
        "tokenize": {"vocab_size": vocab},
        "teacher": {"lr": lr, "steps": 90, "n_layers": layers},
        **{f"distill_{r}": dict(DISTILL) for r in (1, 2, 3)},
        "evaluate": {},
    }


def teacher(record) -> dict[str, float]:
    stage = record.stages[1]
    return {
        "seconds": stage.compute_seconds,
        "from_scratch": stage.compute_seconds + stage.resumed_cost,
        "resumed_from": stage.resumed_from or 0,
        "valid_byte_perplexity": stage.metrics["byte_perplexity"],
        "objective": record.objective,
    }


def _line(row: dict) -> str:
    """One setting: the 3-layer teacher's seconds and perplexity, scratch → grown."""
    return (
        f"lr {row['lr']:g} vocab {row['vocab']}: teacher seconds "
        f"{row['scratch_seconds']:.2f} -> {row['grown_seconds']:.2f}, "
        f"valid byte ppl {row['scratch_valid_byte_perplexity']:.3f} -> "
        f"{row['grown_valid_byte_perplexity']:.3f} (2 layers: "
        f"{row['two_valid_byte_perplexity']:.3f}), objective {row['scratch_objective']:.3f} -> "
        f"{row['grown_objective']:.3f} (2 layers: {row['two_objective']:.3f})"
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--lrs", default="0.006,0.012,0.024")
    p.add_argument("--vocabs", default="300,500")
    args = p.parse_args()
    started = time.time()
    grown = load_pipeline(f"{EXAMPLE}:grown")
    scratch = load_pipeline(f"{EXAMPLE}:steps")
    rows = []
    for lr in map(float, args.lrs.split(",")):
        for vocab in map(int, args.vocabs.split(",")):
            with tempfile.TemporaryDirectory() as folder:
                cache = StageCache(Path(folder) / "grown")
                two = run(grown, setting(lr, vocab, 2), cache=cache)
                three = run(grown, setting(lr, vocab, 3), cache=cache)
                alone = run(scratch, setting(lr, vocab, 3), cache=StageCache(Path(folder) / "s"))
            row = {"lr": lr, "vocab": vocab}
            for name, record in (("two", two), ("grown", three), ("scratch", alone)):
                row.update({f"{name}_{k}": v for k, v in teacher(record).items()})
            rows.append(row)
            print(_line(row), flush=True)
    mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0] if k not in ("lr", "vocab")}
    figures = {f"mean_{k}": v for k, v in mean.items()}
    figures["teacher_seconds_saved"] = 1 - mean["grown_seconds"] / mean["scratch_seconds"]
    figures["settings"] = len(rows)
    report(figures, None)
    if args.json:
        record = provenance(sys.argv[1:], started, time.time())  # commit and machine
        record["command"] = "python benchmarks/growth.py " + shlex.join(sys.argv[1:])
        figures = {**figures, "rows": rows, "provenance": record}
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
