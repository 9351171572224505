"""Option checks, seeded splits, subsampling and standardisation shared by the tasks."""

from __future__ import annotations

import numpy as np


def check_fraction(name: str, value: float) -> None:
    """Raise unless 0 < ``value`` < 1."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` {value} must lie strictly between 0 and 1")


def check_positive(name: str, value: int | None, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a positive int (or None, where allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` {value!r} must be a positive integer")


def take_at_most(
    x: np.ndarray, y: np.ndarray, max_n: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random subset of at most ``max_n`` pairs, kept in their original order."""
    if max_n is None or max_n >= len(x):
        return x, y
    keep = np.sort(rng.choice(len(x), size=max_n, replace=False))
    return x[keep], y[keep]


def split_off(
    x: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle and cut off ``fraction`` of the pairs (at least one): ``x_rest, y_rest, x_cut, y_cut``."""
    n_cut = max(1, round(len(x) * fraction))
    if n_cut >= len(x):
        raise ValueError(
            f"cannot split {len(x)} sequences: a fraction of {fraction} leaves none to train on"
        )
    order = rng.permutation(len(x))
    rest, cut = order[n_cut:], order[:n_cut]
    return x[rest], y[rest], x[cut], y[cut]


def standardise(x_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-channel zero mean, unit variance with the statistics of ``x_train`` (N, L, d), float32."""
    mean = x_train.mean(axis=(0, 1), dtype=np.float64)
    std = x_train.std(axis=(0, 1), dtype=np.float64)
    mean, std = mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)
    return tuple(((x - mean) / std).astype(np.float32, copy=False) for x in (x_train, *others))
