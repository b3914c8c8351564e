"""Run a stage's numeric work on a fixed number of threads.

Stage costs are what the tuners learn and the budget is charged, so a stage
should cost the same whether it runs alone or beside another trial: torch's
intra-op pool and the BLAS/OpenMP pools under numpy and scikit-learn are held
to ``threads`` for the length of the block, then restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits


@contextmanager
def limited_threads(threads: int = 1) -> Iterator[None]:
    """Hold torch, BLAS and OpenMP to ``threads`` threads inside the block."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
