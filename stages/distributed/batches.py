"""The global batch order of data-parallel training, and each rank's share of it.

Every worker computes the same order from the seed, so the N workers together
see exactly the global batches a single process would see.
"""

from __future__ import annotations

import numpy as np


def global_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The sample indices of every global batch of ``epoch``, in training order.

    The order is a permutation drawn from ``(seed, epoch)``; the last batch
    holds the remainder when ``batch_size`` does not divide ``num_samples``.
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"need num_samples >= 1 and batch_size >= 1, got {num_samples}, {batch_size}"
        )
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    return [order[start : start + batch_size] for start in range(0, num_samples, batch_size)]


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s share of a global batch: every ``world_size``-th index.

    Shard sizes differ by at most one; a rank's shard is empty when the batch
    holds fewer samples than there are ranks.
    """
    return batch[rank::world_size]


def loss_weight(shard_size: int, batch_size: int, world_size: int) -> float:
    """What a rank multiplies its shard's mean loss by so that DDP's gradient
    average equals the gradient of the mean loss over the whole global batch.

    DDP averages gradients over ranks: (1/N) Σ_r w_r ∇mean_r. With
    w_r = N·|shard_r|/|batch| that is (1/|batch|) Σ_i ∇loss_i, also when the
    shards are uneven.
    """
    return world_size * shard_size / batch_size
