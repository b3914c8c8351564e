"""Fixed, disjoint training / validation / test rows of a data set.

A benchmark pipeline tunes on the validation rows and is re-scored on the
test rows, which must influence nothing else: :func:`split_rows` draws the
three sets of row indices once, from a seed, so every trial (and every test)
sees the same rows, and the indices themselves can be checked for overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from sklearn.model_selection import train_test_split

T = TypeVar("T")


@dataclass(frozen=True)
class SplitRows:
    """Row indices of the training, validation and test splits (pairwise disjoint)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def take(self, make: type[T], x: Any, y: Any) -> T:
        """``make(x_train, y_train, x_valid, y_valid, x_test, y_test)`` from these rows
        (e.g. a ``TabularSplits`` or an ``ImageSplits``)."""
        x, y = np.asarray(x), np.asarray(y)
        return make(
            x[self.train], y[self.train], x[self.valid], y[self.valid], x[self.test], y[self.test]
        )


def split_rows(
    labels: np.ndarray,
    *,
    valid: int | float,
    test: int | float,
    train: int | float | None = None,
    seed: int = 0,
    stratify: bool = False,
) -> SplitRows:
    """Split ``len(labels)`` rows into test, validation and training rows, in that order.

    Sizes are row counts (ints) or fractions of all rows (floats). ``train``
    (default: every row left) keeps only that many of the remaining rows, for a
    harder task on the same validation and test rows. ``stratify`` keeps the
    class proportions of ``labels`` in every split.
    """
    labels = np.asarray(labels)
    n = len(labels)
    sizes = {name: _count(size, n, name) for name, size in (("valid", valid), ("test", test))}
    rest = n - sizes["valid"] - sizes["test"]
    wanted = rest if train is None else _count(train, n, "train")
    if wanted < 1 or wanted > rest:
        raise ValueError(
            f"{n} rows leave {rest} for training after validation and test; asked for {wanted}"
        )
    everything = np.arange(n)

    def cut(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows kept, ``size`` rows cut off)."""
        if size == len(rows):
            return rows[:0], rows
        return train_test_split(
            rows, test_size=size, random_state=seed, stratify=labels[rows] if stratify else None
        )

    rest_rows, test_rows = cut(everything, sizes["test"])
    train_rows, valid_rows = cut(rest_rows, sizes["valid"])
    if wanted < len(train_rows):
        _, train_rows = cut(train_rows, wanted)
    return SplitRows(np.sort(train_rows), np.sort(valid_rows), np.sort(test_rows))


def _count(size: int | float, n: int, name: str) -> int:
    count = round(size * n) if isinstance(size, float) else int(size)
    if not 0 < count < n:
        raise ValueError(f"{name} must be between 0 and {n} rows, got {size!r}")
    return count
