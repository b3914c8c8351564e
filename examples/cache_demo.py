"""Run the digits pipeline by hand over configurations that share prefixes (no tuner), and show
what the stage cache saved: per-stage hits and misses and the seconds spared."""

import runpy
import time
from pathlib import Path

from memotune import StageCache, run

pipeline = runpy.run_path(str(Path(__file__).with_name("digits.py")))["pipeline"]
cache = StageCache(".memotune/cache")

feature_settings = [
    {"n_components": 48, "kernel": "rbf", "gamma": 0.05},
    {"n_components": 24, "kernel": "cosine", "gamma": 0.05},
]
configs = [
    {"features": f, "train": {"C": C, "max_iter": 200}}
    for f in feature_settings
    for C in (0.1, 1.0, 10.0)
]

print(f"{'trial':>5}  {'features':>24}  {'C':>5}  {'accuracy':>8}  stages")
saved = spent = 0.0
for number, config in enumerate(configs, 1):
    started = time.perf_counter()
    record = run(pipeline, config, cache=cache)
    spent += time.perf_counter() - started
    saved += sum(s.compute_seconds - s.load_seconds for s in record.stages if s.hit)
    f = config["features"]
    stages = "  ".join(
        f"{s.stage}:{'hit' if s.hit else 'miss'}({s.compute_seconds:.2f}s)" for s in record.stages
    )
    label = f"{f['kernel']}/{f['n_components']}/{f['gamma']}"
    print(f"{number:>5}  {label:>24}  {config['train']['C']:>5}  {record.objective:8.4f}  {stages}")
print(f"\nwall time {spent:.2f}s; the cache spared {saved:.2f}s of stage compute")
stats = cache.stats()
print(f"cache: {stats.entries} entries, {stats.total_bytes / 1e6:.1f} MB, {stats.hits} hits")
