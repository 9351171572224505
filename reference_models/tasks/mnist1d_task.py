"""MNIST-1D: 1-D digit templates, randomly transformed; generated locally, never downloaded."""

from __future__ import annotations

import random

import numpy as np

from .dataset import SequenceDataset
from .splits import check_fraction, check_positive, split_off, standardise, take_at_most

CANONICAL_SEED = 42  # mnist1d's own default: the train/test data behind its published baselines


def _generate(num_samples: int) -> dict[str, np.ndarray]:
    """``mnist1d.data.make_dataset`` (x (0.8 N, 40), x_test (0.2 N, 40)) at the canonical seed.

    It reseeds Python's and NumPy's global generators; their states are restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, CANONICAL_SEED
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        return make_dataset(args)
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)


def load_mnist1d(
    *,
    seed: int = 0,
    num_samples: int = 5000,
    val_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceDataset:
    """MNIST-1D as (N, 40, 1) sequences, 10 classes, standardised with train statistics.

    ``num_samples`` are generated (mnist1d keeps 80% for training, 20% for test) with the
    package's fixed seed, so every ``seed`` sees the same data; ``seed`` draws the
    ``max_train``/``max_test`` subsets and the validation split of the training part.
    """
    check_positive("num_samples", num_samples)
    if num_samples < 10:
        raise ValueError(f"`num_samples` {num_samples} must be at least 10 (one per class)")
    check_fraction("val_fraction", val_fraction)
    check_positive("max_train", max_train, allow_none=True)
    check_positive("max_test", max_test, allow_none=True)
    data = _generate(num_samples)
    rng = np.random.default_rng(seed)
    x_pool, y_pool = take_at_most(data["x"][..., None], data["y"].astype(np.int64), max_train, rng)
    x_test, y_test = take_at_most(
        data["x_test"][..., None], data["y_test"].astype(np.int64), max_test, rng
    )
    x_train, y_train, x_val, y_val = split_off(x_pool, y_pool, val_fraction, rng)
    x_train, x_val, x_test = standardise(x_train, x_val, x_test)
    return SequenceDataset(
        "mnist1d", "classification", x_train, y_train, x_val, y_val, x_test, y_test, num_classes=10
    )
