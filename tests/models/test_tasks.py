"""Tests of reference_models.tasks: generated, bundled and local-file sequence tasks."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import numpy as np
import pytest

from reference_models.tasks import TASKS, SequenceDataset, batches, load_task


def as_pairs(x: np.ndarray, y, levels: int) -> list[tuple[tuple[int, ...], int]]:
    """(sequence, label) pairs of values in [0, 1] quantised back to integers 0..``levels``,
    in a canonical order, to compare data sets up to shuffling."""
    quantised = np.rint(np.asarray(x, dtype=np.float64) * levels).astype(np.int64)
    return sorted(
        (tuple(row.ravel().tolist()), int(label)) for row, label in zip(quantised, y, strict=True)
    )


def train_and_val_pairs(data: SequenceDataset) -> list[tuple[tuple[int, ...], int]]:
    """``as_pairs`` of the training and validation splits together, of 8-bit images."""
    x = np.concatenate([data.x_train, data.x_val])
    return as_pairs(x, np.concatenate([data.y_train, data.y_val]), 255)


def assert_classification_dataset(data: SequenceDataset, length: int, channels: int) -> None:
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        assert x.dtype == np.float32 and x.shape[1:] == (length, channels)
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert 0 <= y.min() and y.max() < data.num_classes
    assert (data.seq_len, data.d_input, data.d_output) == (length, channels, data.num_classes)


def assert_same_arrays(a: SequenceDataset, b: SequenceDataset) -> None:
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# --- registry -------------------------------------------------------------------------------


def test_unknown_task_lists_the_choices():
    with pytest.raises(ValueError, match="`task` 'foo' is unknown; choose one of: mnist1d, digits"):
        load_task("foo")
    assert set(TASKS) == {
        *("mnist1d", "digits", "sysid", "smnist", "scifar", "selective_copying"),
        *("listops", "imdb", "aan", "pathfinder", "arrays"),
    }


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"\['colour'\] are not accepted by task 'digits'"):
        load_task("digits", colour=True)
    with pytest.raises(ValueError, match=r"\['data_dir'\] are not accepted by task 'sysid'"):
        load_task("sysid", data_dir="/tmp")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"val_fraction": 1.5}, "`val_fraction` 1.5"),
        ({"max_train": 0}, "`max_train` 0"),
        ({"max_test": 2.5}, "`max_test` 2.5"),
    ],
)
def test_bad_option_values_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        load_task("digits", **options)


# --- mnist1d ----------------------------------------------------------------------------------


def test_mnist1d_shapes_splits_and_standardisation():
    data = load_task("mnist1d", num_samples=200)
    assert data.name == "mnist1d" and data.kind == "classification" and data.num_classes == 10
    assert_classification_dataset(data, length=40, channels=1)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (144, 16, 40)
    assert abs(data.x_train.mean()) < 1e-5 and abs(data.x_train.std() - 1) < 1e-5
    assert data.truth is None


def test_mnist1d_is_deterministic_and_seed_only_moves_the_validation_split():
    a, b = (load_task("mnist1d", num_samples=200, seed=3) for _ in range(2))
    assert_same_arrays(a, b)
    c = load_task("mnist1d", num_samples=200, seed=4)
    assert not np.array_equal(a.y_val, c.y_val)
    np.testing.assert_array_equal(a.y_test, c.y_test)  # x_test moves with the train statistics
    np.testing.assert_allclose(
        (a.x_test - a.x_test.mean()) / a.x_test.std(),
        (c.x_test - c.x_test.mean()) / c.x_test.std(),
        atol=1e-4,
    )
    np.testing.assert_array_equal(
        np.sort(np.concatenate([a.y_train, a.y_val])), np.sort(np.concatenate([c.y_train, c.y_val]))
    )


def test_mnist1d_leaves_global_random_state_alone():
    """mnist1d reseeds NumPy's legacy global generator; the loader must restore it."""
    np.random.seed(123)  # noqa: NPY002
    expected = np.random.random_sample()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    load_task("mnist1d", num_samples=20)
    assert np.random.random_sample() == expected  # noqa: NPY002


def test_mnist1d_loads_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    data = load_task("mnist1d", num_samples=50)
    assert len(data.x_train) + len(data.x_val) == 40


def test_mnist1d_subsets():
    data = load_task("mnist1d", num_samples=200, max_train=50, max_test=7)
    assert (len(data.x_train) + len(data.x_val), len(data.x_test)) == (50, 7)


# --- digits -----------------------------------------------------------------------------------


def test_digits_shapes_values_and_disjoint_splits():
    from sklearn.datasets import load_digits

    data = load_task("digits")
    assert_classification_dataset(data, length=64, channels=1)
    bunch = load_digits()
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (1294, 144, 359)
    x_all = np.concatenate([data.x_train, data.x_val, data.x_test])
    y_all = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert x_all.min() == 0.0 and x_all.max() == 1.0
    assert as_pairs(x_all, y_all, 16) == as_pairs(bunch.data / 16.0, bunch.target, 16)


def test_digits_is_deterministic_by_seed():
    assert_same_arrays(load_task("digits", seed=1), load_task("digits", seed=1))
    assert not np.array_equal(
        load_task("digits", seed=1).y_test, load_task("digits", seed=2).y_test
    )


def test_digits_subsets():
    data = load_task("digits", max_train=100, max_test=30, val_fraction=0.2)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (80, 20, 30)


# --- sysid ------------------------------------------------------------------------------------


def brute_force_outputs(A, B, C, D, u):
    """y[k] = C x[k] + D u[k], x[k+1] = A x[k] + B u[k], x[0] = 0, one sequence at a time."""
    y = np.zeros((u.shape[0], u.shape[1], C.shape[0]))
    for i in range(u.shape[0]):
        x = np.zeros(A.shape[0])
        for k in range(u.shape[1]):
            u_k = u[i, k].astype(np.float64)
            y[i, k] = C.dot(x) + D.dot(u_k)
            x = A.dot(x) + B.dot(u_k)
    return y


@pytest.mark.parametrize(("order", "inputs", "outputs"), [(8, 2, 2), (5, 1, 3)])
def test_sysid_outputs_equal_a_simulation_of_the_true_system(order, inputs, outputs):
    data = load_task(
        "sysid", order=order, inputs=inputs, outputs=outputs, length=30, num_sequences=40, seed=5
    )
    truth = data.truth
    assert data.kind == "regression" and data.num_classes is None
    assert truth.order == order and truth.A.shape == (order, order)
    assert (truth.B.shape, truth.C.shape, truth.D.shape) == (
        (order, inputs),
        (outputs, order),
        (outputs, inputs),
    )
    assert (data.d_input, data.d_output, data.seq_len) == (inputs, outputs, 30)
    assert np.max(np.abs(np.linalg.eigvals(truth.A))) < 0.95 + 1e-9
    assert np.min(np.abs(np.linalg.eigvals(truth.A))) > 0.5 - 1e-9
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape[2] == outputs
        expected = brute_force_outputs(truth.A, truth.B, truth.C, truth.D, x)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 40


def test_sysid_hsv_match_an_oracle_and_the_system_is_minimal():
    from scipy.linalg import solve_discrete_lyapunov

    truth = load_task("sysid", num_sequences=10, length=8).truth
    A, B, C = truth.A, truth.B, truth.C
    P = solve_discrete_lyapunov(A, B @ B.T)
    Q = solve_discrete_lyapunov(A.T, C.T @ C)
    oracle = np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q))))[::-1]
    np.testing.assert_allclose(truth.hsv, oracle, rtol=1e-6)
    assert np.all(np.diff(truth.hsv) <= 0) and truth.hsv[-1] > 1e-6


def test_sysid_noise_is_added_to_the_same_outputs():
    clean = load_task("sysid", num_sequences=200, length=64, seed=2)
    noisy = load_task("sysid", num_sequences=200, length=64, seed=2, noise=0.1)
    np.testing.assert_array_equal(clean.x_train, noisy.x_train)
    np.testing.assert_array_equal(clean.truth.A, noisy.truth.A)
    assert abs(np.std(noisy.y_train - clean.y_train) - 0.1) < 0.005
    with pytest.raises(ValueError, match="`noise` -1"):
        load_task("sysid", noise=-1.0)
    with pytest.raises(ValueError, match="`order` 0"):
        load_task("sysid", order=0)


def test_sysid_outputs_have_unit_variance_and_seeds_differ():
    data = load_task("sysid", num_sequences=400, length=200)
    np.testing.assert_allclose(data.y_train[:, 100:].std(axis=(0, 1)), 1.0, atol=0.1)
    other = load_task("sysid", num_sequences=10, length=8, seed=1)
    assert not np.allclose(data.truth.A, other.truth.A)


# --- smnist -----------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, compress: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "train-labels-idx1-ubyte": np.array([3, 1, 4, 1, 5]),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([9, 2, 6]),
    }
    for name, array in arrays.items():
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_smnist_round_trips_idx_files(tmp_path, compress):
    arrays = write_mnist(tmp_path, compress, np.random.default_rng(0))
    data = load_task("smnist", data_dir=str(tmp_path), val_fraction=0.2)
    assert_classification_dataset(data, length=784, channels=1)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (4, 1, 3)
    train_images = arrays["train-images-idx3-ubyte"].reshape(5, 784) / 255
    assert train_and_val_pairs(data) == as_pairs(
        train_images, arrays["train-labels-idx1-ubyte"], 255
    )
    np.testing.assert_allclose(
        data.x_test[:, :, 0], arrays["t10k-images-idx3-ubyte"].reshape(3, 784) / 255, rtol=1e-6
    )
    np.testing.assert_array_equal(data.y_test, [9, 2, 6])


def test_smnist_permute_applies_one_fixed_permutation(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", False, np.random.default_rng(1))
    plain = load_task("smnist", data_dir=tmp_path, val_fraction=0.2)
    permuted = load_task("smnist", data_dir=tmp_path, val_fraction=0.2, permute=True)
    perm = load_task("smnist", data_dir=tmp_path, val_fraction=0.2, permute=True, seed=9)
    np.testing.assert_array_equal(permuted.x_test, perm.x_test)
    assert not np.array_equal(permuted.x_test, plain.x_test)
    np.testing.assert_array_equal(np.sort(permuted.x_test, axis=1), np.sort(plain.x_test, axis=1))


def test_smnist_needs_an_existing_data_dir(tmp_path):
    with pytest.raises(ValueError, match="`data_dir` is required for task 'smnist'"):
        load_task("smnist")
    with pytest.raises(ValueError, match=r"`data_dir` .*nowhere does not exist"):
        load_task("smnist", data_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="has no train-images-idx3-ubyte"):
        load_task("smnist", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (
            lambda raw: b"\x00\x00\x08\x01" + raw[4:],
            "has magic number 0x00000801, expected 0x00000803",
        ),
        (lambda raw: raw[:-10], "is truncated: 3910 data bytes"),
        (lambda raw: raw[:7], "is truncated: 7 bytes"),
        (lambda raw: raw + b"\x00", "is longer than its shape says"),
    ],
)
def test_smnist_malformed_idx_names_the_file(tmp_path, corrupt, message):
    write_mnist(tmp_path, False, np.random.default_rng(0))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=f"train-images-idx3-ubyte {message}"):
        load_task("smnist", data_dir=tmp_path)


def test_smnist_bad_gzip_and_label_count_name_the_file(tmp_path):
    write_mnist(tmp_path, True, np.random.default_rng(0))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(idx_bytes(np.array([1, 2])))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz is not a valid gzip file"):
        load_task("smnist", data_dir=tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array([1]))))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz has 1 labels for 3 images"):
        load_task("smnist", data_dir=tmp_path)


# --- scifar -----------------------------------------------------------------------------------


def write_cifar_binary(
    folder: Path, rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Two records per file; returns file name -> (images (N, 32, 32, 3) uint8, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 2, dtype=np.uint8)
        planes = images.transpose(0, 3, 1, 2).reshape(2, 3072)  # R plane, G plane, B plane
        (folder / name).write_bytes(np.concatenate([labels[:, None], planes], axis=1).tobytes())
        written[name] = (images, labels)
    return written


def test_scifar_round_trips_binary_batches(tmp_path):
    written = write_cifar_binary(tmp_path / "cifar-10-batches-bin", np.random.default_rng(0))
    data = load_task("scifar", data_dir=tmp_path, normalize=False, val_fraction=0.1)
    assert_classification_dataset(data, length=1024, channels=3)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (9, 1, 2)
    test_images, test_labels = written["test_batch.bin"]
    np.testing.assert_allclose(data.x_test, test_images.reshape(2, 1024, 3) / 255, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, test_labels)
    train = [written[f"data_batch_{i}.bin"] for i in range(1, 6)]
    x_expected = np.concatenate([images for images, _ in train]).reshape(10, 1024, 3) / 255
    y_expected = np.concatenate([labels for _, labels in train])
    assert train_and_val_pairs(data) == as_pairs(x_expected, y_expected, 255)


def test_scifar_grayscale_and_normalisation(tmp_path):
    write_cifar_binary(tmp_path, np.random.default_rng(1))
    raw = load_task("scifar", data_dir=tmp_path, normalize=False)
    gray = load_task("scifar", data_dir=tmp_path, normalize=False, grayscale=True)
    assert gray.d_input == 1
    np.testing.assert_allclose(
        gray.x_test[..., 0], raw.x_test @ np.array([0.299, 0.587, 0.114]), rtol=1e-5
    )
    normalized = load_task("scifar", data_dir=tmp_path)
    np.testing.assert_allclose(normalized.x_train.mean(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized.x_train.std(axis=(0, 1)), 1.0, atol=1e-5)


def test_scifar_malformed_binary_names_the_file(tmp_path):
    write_cifar_binary(tmp_path, np.random.default_rng(0))
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"data_batch_3.bin has 6145 bytes, not a whole"):
        load_task("scifar", data_dir=tmp_path)
    path.write_bytes(bytes([10]) + bytes(3072))
    with pytest.raises(ValueError, match=r"data_batch_3.bin has label 10"):
        load_task("scifar", data_dir=tmp_path)
    path.unlink()
    with pytest.raises(ValueError, match=r"data_batch_3.bin is missing"):
        load_task("scifar", data_dir=tmp_path)


def test_scifar_round_trips_png_folders(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    written = {}
    for split, count in [("train", 3), ("test", 2)]:
        for class_name in ["cat", "dog"]:
            (tmp_path / split / class_name).mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(image).save(tmp_path / split / class_name / f"{i}.png")
                written.setdefault(split, []).append((image, ["cat", "dog"].index(class_name)))
    data = load_task("scifar", data_dir=tmp_path, normalize=False, val_fraction=0.2)
    assert_classification_dataset(data, length=1024, channels=3)
    assert data.num_classes == 2
    x_test = np.stack([image for image, _ in written["test"]]).reshape(4, 1024, 3) / 255
    np.testing.assert_allclose(data.x_test, x_test, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, [0, 0, 1, 1])
    x_train = np.stack([image for image, _ in written["train"]]).reshape(6, 1024, 3) / 255
    assert train_and_val_pairs(data) == as_pairs(
        x_train, [label for _, label in written["train"]], 255
    )


def test_scifar_bad_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="holds none of: cifar-10-batches-bin"):
        load_task("scifar", data_dir=tmp_path)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"0.png cannot be read"):
        load_task("scifar", data_dir=tmp_path)


# --- batches and the container ----------------------------------------------------------------


def test_batches_cover_every_row_once():
    x, y = np.arange(10)[:, None], np.arange(10)
    seen = [yb for _, yb in batches(x, y, 3, rng=np.random.default_rng(0))]
    assert [len(b) for b in seen] == [3, 3, 3, 1]
    assert sorted(np.concatenate(seen).tolist()) == list(range(10))
    ordered = [yb.tolist() for _, yb in batches(x, y, 4, shuffle=False, drop_last=True)]
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7]]
    again = [yb for _, yb in batches(x, y, 3, rng=np.random.default_rng(0))]
    assert all(np.array_equal(a, b) for a, b in zip(seen, again, strict=True))


def test_batches_check_their_arguments():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="`batch_size` 0"):
        batches(x, x, 0, shuffle=False)
    with pytest.raises(ValueError, match="`rng` is None"):
        batches(x, x, 2)
    with pytest.raises(ValueError, match="`x` has 4 rows but `y` has 3"):
        batches(x, x[:3], 2, shuffle=False)


def test_sequence_dataset_rejects_inconsistent_arrays():
    x, y = np.zeros((4, 5, 1), np.float32), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="`x_val` must be float32"):
        SequenceDataset("t", "classification", x, y, x.astype(np.float64), y, x, y, num_classes=2)
    with pytest.raises(ValueError, match="`y_test` has labels in \\[0, 7\\]"):
        SequenceDataset(
            "t", "classification", x, y, x, y, x, y + np.arange(4) * 7 // 3, num_classes=2
        )
    with pytest.raises(ValueError, match="`kind` 'ranking' is unknown"):
        SequenceDataset("t", "ranking", x, y, x, y, x, y)
    with pytest.raises(ValueError, match="`num_classes` None does not fit"):
        SequenceDataset("t", "classification", x, y, x, y, x, y)


def test_describe_is_one_line():
    line = load_task("sysid", num_sequences=20, length=16).describe()
    assert "\n" not in line
    assert line.startswith("sysid: regression, d_output=2, L=16, d_input=2, true order 8;")
