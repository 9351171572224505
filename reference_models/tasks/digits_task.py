"""scikit-learn's bundled 8x8 digits (1797 images), read row by row as length-64 sequences."""

from __future__ import annotations

import numpy as np

from .dataset import SequenceDataset
from .splits import check_fraction, check_positive, split_off, take_at_most


def load_digits(
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceDataset:
    """Digits as (N, 64, 1) sequences with pixels scaled to [0, 1], 10 classes.

    ``seed`` draws the test split (``test_fraction`` of all images), then the validation
    split (``val_fraction`` of the rest), and the ``max_train``/``max_test`` subsets.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits

    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    check_positive("max_train", max_train, allow_none=True)
    check_positive("max_test", max_test, allow_none=True)
    bunch = sklearn_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)[..., None]
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    x_pool, y_pool, x_test, y_test = split_off(x, y, test_fraction, rng)
    x_pool, y_pool = take_at_most(x_pool, y_pool, max_train, rng)
    x_test, y_test = take_at_most(x_test, y_test, max_test, rng)
    x_train, y_train, x_val, y_val = split_off(x_pool, y_pool, val_fraction, rng)
    return SequenceDataset(
        "digits", "classification", x_train, y_train, x_val, y_val, x_test, y_test, num_classes=10
    )
