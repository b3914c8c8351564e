"""Turning a planned micro-batch into tensors for the language model.

Each row holds one sample (padding) or several (packing). Positions restart
at 0 for each sample, ``segments`` numbers the samples of a row (-1 marks
padding), and each position's target is the next token of its own sample
(-100, ignored by the loss, at a sample's last token and on padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .microbatch import MicroBatch

IGNORE = -100


@dataclass
class Batch:
    tokens: Tensor  # [R, L]
    segments: Tensor  # [R, L], -1 on padding
    positions: Tensor  # [R, L]
    targets: Tensor  # [R, L], IGNORE where nothing is predicted

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE).sum())

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            *(t.to(device) for t in (self.tokens, self.segments, self.positions, self.targets))
        )


def collate(micro_batch: MicroBatch, samples: Sequence[np.ndarray]) -> Batch:
    """The tensors of ``micro_batch``, whose rows index into ``samples``."""
    shape = (len(micro_batch.rows), micro_batch.length)
    tokens = np.zeros(shape, dtype=np.int64)
    segments = np.full(shape, -1, dtype=np.int64)
    positions = np.zeros(shape, dtype=np.int64)
    targets = np.full(shape, IGNORE, dtype=np.int64)
    for r, row in enumerate(micro_batch.rows):
        start = 0
        for segment, index in enumerate(row):
            sample = np.asarray(samples[index])
            end = start + len(sample)
            if end > micro_batch.length:
                raise ValueError(
                    f"row {r} holds {end} tokens, more than its length {micro_batch.length}"
                )
            tokens[r, start:end] = sample
            segments[r, start:end] = segment
            positions[r, start:end] = np.arange(len(sample))
            targets[r, start : end - 1] = sample[1:]
            start = end
    return Batch(*(torch.from_numpy(a) for a in (tokens, segments, positions, targets)))


def empty_batch() -> Batch:
    """A micro-batch with no rows: a rank with fewer micro-batches than its peers runs
    these so that every rank takes part in every all-to-all."""
    none = torch.zeros((0, 1), dtype=torch.long)
    return Batch(none, none.clone(), none.clone(), none.clone())
