"""A user's own sequences from one ``.npz`` file: ``x_train, y_train, x_test, y_test`` and,
optionally, ``x_val, y_val``; classification (integer labels) or regression (float targets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import SequenceDataset
from .splits import check_fraction, check_positive, split_off, take_at_most

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL_KEYS = ("x_val", "y_val")


def _read(data_file: str | Path) -> dict[str, np.ndarray]:
    """Every array of ``data_file``, read with ``allow_pickle=False``; ValueErrors name the key."""
    path = Path(data_file).expanduser()
    if not path.is_file():
        raise ValueError(f"`data_file` {path} does not exist or is not a file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"`data_file` {path} is not a NumPy .npz file: {error}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"`data_file` {path} holds one array; it must be an .npz with keys {', '.join(REQUIRED_KEYS)}")
    with archive:
        keys = set(archive.files)
        missing = [key for key in REQUIRED_KEYS if key not in keys]
        unknown = sorted(keys - {*REQUIRED_KEYS, *OPTIONAL_KEYS})
        if missing or unknown:
            raise ValueError(
                f"`data_file` {path} lacks the keys {missing} / has unknown keys {unknown}; "
                f"it needs {', '.join(REQUIRED_KEYS)} and may hold {', '.join(OPTIONAL_KEYS)}"
            )
        if ("x_val" in keys) != ("y_val" in keys):
            raise ValueError(f"`data_file` {path} must hold both `x_val` and `y_val` or neither")
        arrays = {}
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as error:  # object arrays need pickle
                raise ValueError(f"`{key}` in {path} cannot be read without pickle: {error}") from None
    return arrays


def _inputs(key: str, x: np.ndarray) -> np.ndarray:
    """(N, L, d) float32 from (N, L, d) or (N, L) real numbers, all finite."""
    if x.dtype.kind not in "iuf":
        raise ValueError(f"`{key}` must hold real numbers, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"`{key}` must have shape (N, L, d) or (N, L) with no empty axis, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"`{key}` holds {int((~np.isfinite(x)).sum())} NaN or Inf value(s)")
    return x.astype(np.float32)


def _targets(key: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """int64 labels (N,) (integer dtype) or float32 targets (N, L, d_out) or (N, d_out) (float dtype)."""
    if y.ndim == 0 or len(y) != len(x):
        raise ValueError(f"`{key}` has shape {y.shape}: it needs one target per sequence, {len(x)}")
    if y.dtype.kind in "iu":
        if y.ndim != 1:
            raise ValueError(f"`{key}` holds integer labels, so it must have shape (N,), got {y.shape}")
        if y.min() < 0:
            raise ValueError(f"`{key}` holds the negative label {y.min()}; labels are 0, 1, ..., classes - 1")
        return y.astype(np.int64)
    if y.dtype.kind != "f":
        raise ValueError(f"`{key}` must hold integer labels or float targets, got dtype {y.dtype}")
    if y.ndim not in (2, 3) or (y.ndim == 3 and y.shape[1] != x.shape[1]):
        raise ValueError(f"`{key}` holds float targets, so it must have shape (N, L={x.shape[1]}, d_out) or (N, d_out), got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"`{key}` holds {int((~np.isfinite(y)).sum())} NaN or Inf value(s)")
    return y.astype(np.float32)


def load_arrays(
    *,
    data_file: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    max_train: int | None = None,
) -> SequenceDataset:
    """The arrays of ``data_file`` (an ``.npz``) as a ``SequenceDataset``, used as they are
    (no scaling). Inputs ``x_*``: (N, L, d) or (N, L), real. Targets ``y_*``: integer labels
    (N,) for classification (classes: the largest label + 1), or float targets (N, L, d_out)
    (one per step) or (N, d_out) (one per sequence) for regression.

    Without ``x_val, y_val``, ``seed`` draws ``val_fraction`` of the training pairs as the
    validation split; ``max_train`` keeps a random subset of the training pairs.
    """
    if data_file is None:
        raise ValueError("`data_file` is required for task 'arrays': an .npz with x_train, y_train, x_test, y_test")
    check_fraction("val_fraction", val_fraction)
    check_positive("max_train", max_train, allow_none=True)
    arrays = _read(data_file)
    splits = ("train", "val", "test") if "x_val" in arrays else ("train", "test")
    x = {split: _inputs(f"x_{split}", arrays[f"x_{split}"]) for split in splits}
    y = {split: _targets(f"y_{split}", arrays[f"y_{split}"], x[split]) for split in splits}
    for split in splits:
        if x[split].shape[1:] != x["train"].shape[1:]:
            raise ValueError(f"`x_{split}` has (L, d) = {x[split].shape[1:]}, but `x_train` has {x['train'].shape[1:]}")
        if y[split].dtype != y["train"].dtype or y[split].shape[1:] != y["train"].shape[1:]:
            raise ValueError(
                f"`y_{split}` has dtype {y[split].dtype} and shape {y[split].shape}, which does not match "
                f"`y_train` ({y['train'].dtype}, {y['train'].shape}): both labels or both targets of one shape"
            )
    rng = np.random.default_rng(seed)
    x_train, y_train = take_at_most(x["train"], y["train"], max_train, rng)
    if "val" in x:
        x_val, y_val = x["val"], y["val"]
    else:
        x_train, y_train, x_val, y_val = split_off(x_train, y_train, val_fraction, rng)
    classification = y_train.dtype == np.int64
    num_classes = int(max(labels.max() for labels in y.values())) + 1 if classification else None
    return SequenceDataset(
        "arrays", "classification" if classification else "regression",
        x_train, y_train, x_val, y_val, x["test"], y["test"], num_classes=num_classes,
    )
