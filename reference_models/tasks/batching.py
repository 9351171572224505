"""Minibatches of NumPy arrays, for any framework's training loop."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .splits import check_positive


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x[idx], y[idx])`` for consecutive index blocks of ``batch_size``.

    ``x`` (N, ...) and ``y`` (N, ...) are indexed along their first axis; with ``shuffle``
    the order is a permutation drawn from ``rng``. ``drop_last`` skips a final short batch.
    """
    check_positive("batch_size", batch_size)
    if len(x) != len(y):
        raise ValueError(f"`x` has {len(x)} rows but `y` has {len(y)}")
    if shuffle and rng is None:
        raise ValueError("`rng` is None but `shuffle` is True; pass a numpy Generator")
    order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    blocks = (order[start : start + batch_size] for start in range(0, stop, batch_size))
    return ((x[idx], y[idx]) for idx in blocks)
