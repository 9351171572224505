"""Selective copying (Gu and Dao, 2023): recall scattered data tokens in order; generated.

Each sequence has ``length`` steps. The first ``length - num_memorize`` steps hold
``num_memorize`` data tokens (drawn uniformly from ``num_tokens``, repeats allowed) at random
distinct positions, in increasing position order, and the blank token everywhere else; the
last ``num_memorize`` steps hold the marker token. At the j-th marker step the model must
output the j-th data token. Since the data positions vary from sequence to sequence, a
time-invariant filter cannot pick them out: the task needs input-dependent (selective) dynamics,
and the state a model needs grows with ``num_memorize``.

Formulation for ``SequenceDataset``: regression, read per step (pooling "none", MSE).
    x (N, length, num_tokens + 2) float32, one-hot over data tokens 0..num_tokens-1,
      the blank ``num_tokens`` and the marker ``num_tokens + 1``;
    y (N, length, num_tokens) float32, the one-hot data token at each marker step, zeros at
      every other step.
The copy is read back by argmax of the outputs at the last ``num_memorize`` steps.
"""

from __future__ import annotations

import numpy as np

from .dataset import SequenceDataset
from .splits import check_fraction, check_positive, split_off, take_at_most


def _token_sequences(
    num_samples: int, length: int, num_tokens: int, num_memorize: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (num_samples, length) of the inputs, and the data tokens (num_samples,
    num_memorize) in order of position."""
    context = length - num_memorize
    positions = np.sort(rng.random((num_samples, context)).argsort(axis=1)[:, :num_memorize])
    data_tokens = rng.integers(0, num_tokens, size=(num_samples, num_memorize))
    ids = np.full((num_samples, length), num_tokens)  # blank
    np.put_along_axis(ids, positions, data_tokens, axis=1)
    ids[:, context:] = num_tokens + 1  # markers
    return ids, data_tokens


def load_selective_copying(
    *,
    seed: int = 0,
    length: int = 64,
    num_tokens: int = 8,
    num_memorize: int = 4,
    num_samples: int = 2000,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_train: int | None = None,
) -> SequenceDataset:
    """``num_samples`` selective-copying sequences (module docstring), split by ``seed`` into
    test (``test_fraction``), validation (``val_fraction`` of the rest) and training parts;
    at most ``max_train`` training sequences are kept.

    ``length`` counts every step, markers included, and must be at least 2 * num_memorize.
    """
    for name, value in [
        ("length", length),
        ("num_tokens", num_tokens),
        ("num_memorize", num_memorize),
        ("num_samples", num_samples),
    ]:
        check_positive(name, value)
    if length < 2 * num_memorize:
        raise ValueError(
            f"`length` {length} must be at least 2 * num_memorize = {2 * num_memorize}: "
            "room for the data tokens and for their markers"
        )
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    check_positive("max_train", max_train, allow_none=True)
    rng = np.random.default_rng(seed)
    ids, data_tokens = _token_sequences(num_samples, length, num_tokens, num_memorize, rng)
    x = np.eye(num_tokens + 2, dtype=np.float32)[ids]
    y = np.zeros((num_samples, length, num_tokens), dtype=np.float32)
    y[:, length - num_memorize :] = np.eye(num_tokens, dtype=np.float32)[data_tokens]
    x_pool, y_pool, x_test, y_test = split_off(x, y, test_fraction, rng)
    x_train, y_train, x_val, y_val = split_off(x_pool, y_pool, val_fraction, rng)
    x_train, y_train = take_at_most(x_train, y_train, max_train, rng)
    return SequenceDataset(
        "selective_copying", "regression", x_train, y_train, x_val, y_val, x_test, y_test
    )
