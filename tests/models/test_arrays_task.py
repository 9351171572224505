"""The ``arrays`` task: a user's own sequences from an .npz file."""

from __future__ import annotations

import numpy as np
import pytest

from reference_models.tasks import load_arrays, load_task
from reference_models.train.config import TrainConfig


def _arrays(rng, n_train=20, n_test=6, length=5, channels=2, classes=3):
    return {
        "x_train": rng.standard_normal((n_train, length, channels)),
        "y_train": rng.integers(0, classes, n_train),
        "x_test": rng.standard_normal((n_test, length, channels)),
        "y_test": rng.integers(0, classes, n_test),
    }


def _write(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_classification_with_a_validation_split_round_trips(tmp_path):
    arrays = _arrays(np.random.default_rng(0))
    arrays["x_val"], arrays["y_val"] = arrays["x_test"][:2] + 1, np.array([2, 4])
    data = load_task("arrays", data_file=str(_write(tmp_path, **arrays)))
    assert (data.kind, data.num_classes, data.pooling) == ("classification", 5, "mean")
    for key, value in arrays.items():
        stored = getattr(data, key)
        np.testing.assert_array_equal(stored, value.astype(stored.dtype))
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64


def test_validation_split_is_carved_from_train_by_seed(tmp_path):
    arrays = _arrays(np.random.default_rng(1), n_train=30)
    path = _write(tmp_path, **arrays)
    first, again, other = (load_arrays(data_file=path, seed=s, val_fraction=0.2) for s in (0, 0, 1))
    assert len(first.x_val) == 6 and len(first.x_train) == 24
    np.testing.assert_array_equal(first.x_val, again.x_val)
    assert not np.array_equal(first.x_val, other.x_val)
    rows = lambda x: sorted(map(tuple, x.reshape(len(x), -1).tolist()))  # noqa: E731
    pooled = np.concatenate([first.x_train, first.x_val])
    assert rows(pooled) == rows(arrays["x_train"].astype(np.float32))
    np.testing.assert_array_equal(first.x_test, arrays["x_test"].astype(np.float32))


def test_regression_targets_per_step_or_per_sequence(tmp_path):
    rng = np.random.default_rng(2)
    x = {"x_train": rng.standard_normal((10, 7)), "x_test": rng.standard_normal((4, 7))}  # (N, L): one channel
    per_step = load_arrays(data_file=_write(tmp_path, **x, y_train=rng.standard_normal((10, 7, 3)), y_test=rng.standard_normal((4, 7, 3))))
    assert (per_step.kind, per_step.d_input, per_step.d_output, per_step.pooling) == ("regression", 1, 3, "none")
    pooled = load_arrays(data_file=_write(tmp_path, **x, y_train=rng.standard_normal((10, 2)), y_test=rng.standard_normal((4, 2))))
    assert (pooled.kind, pooled.d_output, pooled.pooling, pooled.y_val.shape[1:]) == ("regression", 2, "mean", (2,))


def _bad(arrays, change):
    arrays = dict(arrays)
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y_test": None}, r"lacks the keys \['y_test'\]"),
        ({"x_valid": np.zeros((2, 5, 2))}, r"unknown keys \['x_valid'\]"),
        ({"x_val": np.zeros((2, 5, 2))}, "both `x_val` and `y_val` or neither"),
        ({"x_test": np.full((6, 5, 2), np.nan)}, "`x_test` holds 60 NaN or Inf"),
        ({"x_train": np.zeros((20, 5, 2, 1))}, r"`x_train` must have shape \(N, L, d\)"),
        ({"x_train": np.full((20, 5, 2), "a")}, "`x_train` must hold real numbers"),
        ({"y_train": np.zeros((20, 2), dtype=np.int64)}, r"`y_train` holds integer labels, so it must have shape \(N,\)"),
        ({"y_train": np.array([-1] + [0] * 19)}, "`y_train` holds the negative label -1"),
        ({"y_test": np.zeros(5, dtype=np.int64)}, "`y_test` has shape \\(5,\\): it needs one target per sequence, 6"),
        ({"y_test": np.zeros(6)}, "`y_test` holds float targets"),
        ({"y_test": np.zeros((6, 3))}, "`y_test` has dtype float32 .* does not match `y_train`"),
        ({"x_test": np.zeros((6, 4, 2))}, r"`x_test` has \(L, d\) = \(4, 2\), but `x_train` has \(5, 2\)"),
        ({"y_train": np.array(["a"] * 20)}, "`y_train` must hold integer labels or float targets"),
    ],
)
def test_bad_arrays_are_named(tmp_path, change, message):
    arrays = _bad(_arrays(np.random.default_rng(3)), change)
    with pytest.raises(ValueError, match=message):
        load_arrays(data_file=_write(tmp_path, **arrays))


def test_pickled_objects_and_other_files_are_refused(tmp_path):
    arrays = _arrays(np.random.default_rng(4))
    arrays["y_test"] = np.array([1, "a", None, 2, 3, 4], dtype=object)
    with pytest.raises(ValueError, match=r"`y_test` in .* cannot be read without pickle"):
        load_arrays(data_file=_write(tmp_path, **arrays))
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"holds one array; it must be an \.npz"):
        load_arrays(data_file=tmp_path / "one.npy")
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(ValueError, match=r"is not a NumPy \.npz file"):
        load_arrays(data_file=tmp_path / "text.npz")
    with pytest.raises(ValueError, match="does not exist or is not a file"):
        load_arrays(data_file=tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="`data_file` is required for task 'arrays'"):
        load_task("arrays")


def test_config_pairs_the_task_with_its_file():
    assert TrainConfig(task="arrays", data_file="my.npz").task_options() == {"data_file": "my.npz"}
    with pytest.raises(ValueError, match="`data_file` goes with task 'arrays'"):
        TrainConfig(task="arrays")
    with pytest.raises(ValueError, match="`data_file` goes with task 'arrays'"):
        TrainConfig(task="digits", data_file="my.npz")
