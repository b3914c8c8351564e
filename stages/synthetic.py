"""The EEIPU paper's synthetic pipelines, as ordinary memotune pipelines.

Each stage adds a negated BoTorch test function of its own hyperparameters
to the running objective (maximized). Stage s reports the cost

    cost_s(x) = Σ_d (a_d · g_d(x_d) + b_d)² / (500 · d)

with g_d from {cos, sin, logistic(10x), x²}, a_d an integer in [5, 20] and b_d
an integer in [10, 50], all fixed per (stage, dimension) by ``cost_seed``.
Costs are charged, not slept, in the benchmark's cost units; a cache hit is
charged ε = 0.1 per stage.

- ``synthetic-3``: Beale (2-D) → Hartmann (3-D) → Beale (2-D), bounds [-2, 2].
- ``synthetic-10``: Beale and Hartmann alternating over ten stages (25-D).
  The paper's 10-stage function list is not in its published code; this one
  keeps the 3-stage pipeline's functions and bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from memotune.pipelines import Float, Output, Pipeline, Stage

HIT_COST = 0.1
BOUNDS = (-2.0, 2.0)
_SHAPES: list[Callable[[float], float]] = [
    math.cos,
    math.sin,
    lambda x: 1.0 / (1.0 + math.exp(-10.0 * x)),
    lambda x: x * x,
]


def _test_function(name: str):
    """The negated BoTorch test function (imported here: listing the pipelines, as the
    CLI does, needs no BoTorch)."""
    from botorch.test_functions import Beale, Hartmann

    if name == "beale":
        return Beale(negate=True)  # its own domain, [-4.5, 4.5]², holds [-2, 2]²
    return Hartmann(dim=3, bounds=[BOUNDS] * 3, negate=True)


LAYOUTS = {
    "synthetic-3": ["beale", "hartmann", "beale"],
    "synthetic-10": ["beale", "hartmann"] * 5,
}


def stage_cost(x: list[float], stage: int, cost_seed: int = 0) -> float:
    """The paper's cost of running stage ``stage`` at ``x``."""
    total = 0.0
    for dim, value in enumerate(x):
        rng = np.random.default_rng([cost_seed, stage, dim])
        shape = _SHAPES[int(rng.integers(0, 4))]
        a, b = int(rng.integers(5, 21)), int(rng.integers(10, 51))
        total += (a * shape(value) + b) ** 2
    return total / (500 * len(x))


def synthetic_stage(function: str, index: int, *, last: bool, cost_seed: int = 0) -> Stage:
    """Stage ``index`` of a synthetic pipeline: adds ``-function(x)`` to its upstream sum;
    the ``last`` stage reports the sum as the objective."""
    import torch

    test_function = _test_function(function)
    names = [f"x{d}" for d in range(test_function.dim)]

    def run(upstream: float | None, **params: float) -> Output:
        x = [params[n] for n in names]
        value = float(test_function(torch.tensor([x], dtype=torch.float64)))
        total = (upstream or 0.0) + value
        return Output({"objective": total} if last else total, cost=stage_cost(x, index, cost_seed))

    return Stage(
        run,
        space={n: Float(*BOUNDS) for n in names},
        name=f"s{index + 1}_{function}",
        version=f"synthetic-1-{function}-{cost_seed}-{'last' if last else 'inner'}",
        num_cpus=0,
    )


def synthetic_pipeline(name: str = "synthetic-3", cost_seed: int = 0) -> Pipeline:
    """``synthetic-3`` or ``synthetic-10``; ``cost_seed`` fixes the cost functions."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown synthetic pipeline {name!r}; choose one of {sorted(LAYOUTS)}")
    layout = LAYOUTS[name]
    stages = [
        synthetic_stage(f, i, last=i == len(layout) - 1, cost_seed=cost_seed)
        for i, f in enumerate(layout)
    ]
    return Pipeline(
        stages,
        objective="objective",
        direction="maximize",
        name=name,
        cost_unit="units",
        hit_cost=HIT_COST,
    )
