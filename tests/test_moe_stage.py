"""The MoE trainer stage on real Ray Train workers, and the example pipeline under EEIPU.

A Ray Train run costs 20-60 s of fixed start-up on a 2-CPU machine, so the
fast part of this file makes one run.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from memotune.stages.moe import build_corpus, moe_trainer, tokenize_stage
from memotune.stages.moe.stage import TrainedMoE, validation_metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "moe_lm.py"


def test_fssdp_trainer_runs_on_two_workers_nested_in_a_ray_task(ray_session):
    data = tokenize_stage(fixed={"max_tokens": 48})(build_corpus(), vocab_size=300)
    settings = {
        "d_model": 32, "n_heads": 2, "d_hidden": 48, "n_experts": 4, "top_k": 2,
        "parallel": "fssdp", "overlap_chunks": 2, "hot_factor": 1.2, "num_workers": 2,
        "microbatching": "dynamic", "memory_cap_mb": 16, "steps": 6, "batch_size": 16,
        "lr": 1e-2, "warmup_steps": 1,
    }  # fmt: skip
    stage = moe_trainer(space={}, fixed=settings)
    assert stage.ray_options["num_cpus"] == 0

    @ray_session.remote(**stage.ray_options)
    def stage_task(upstream):  # what memotune's Ray runner does with a stage
        return stage(upstream)

    output = ray_session.get(stage_task.remote(data), timeout=600)
    trained: TrainedMoE = output.value

    assert [row["step"] for row in trained.history] == [1, 2, 3, 4, 5, 6]
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    experts = {
        name.split(".experts.")[1].split(".")[0]
        for name in trained.state_dict
        if ".experts." in name
    }
    assert experts == {"0", "1", "2", "3"}  # gathered from both owners
    assert output.metrics["restarts"] == 0
    # the sharded experts' state is split over the ranks: less than the whole model's
    whole = sum(t.numel() * t.element_size() for t in trained.state_dict.values())
    assert output.metrics["state_bytes_per_rank"] < 3 * whole  # parameters + Adam's two moments

    metrics = validation_metrics(trained)  # one process, every expert, no token dropped
    assert metrics["loss"] == pytest.approx(output.metrics["valid_loss"], rel=1e-4)
    assert 1.0 < metrics["byte_perplexity"] < metrics["perplexity"]
    assert all(math.isfinite(metrics[f"perplexity_{t}"]) for t in ("sentence", "section"))


@pytest.mark.slow
def test_memotune_tune_runs_the_moe_example_with_eeipu(tmp_path):
    """The command the README gives, in a fresh process that starts its own Ray."""
    result = subprocess.run(
        [sys.executable, "-m", "memotune", "tune", str(EXAMPLE), "--tuner", "eeipu"]
        + ["--budget", "240", "--study", "moe-lm", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"best_value"' in result.stdout
