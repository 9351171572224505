"""sMNIST from torchvision-style digit folders and sCIFAR from the Python batches
(``cifar-10-batches-py``), on tiny files the tests write."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from reference_models.tasks import load_task


def sorted_pairs(x: np.ndarray, y: np.ndarray) -> list[tuple[tuple[int, ...], int]]:
    """(8-bit pixels, label) pairs of sequences scaled to [0, 1], in a canonical order."""
    pixels = np.rint(np.asarray(x, dtype=np.float64) * 255).astype(np.int64)
    return sorted(
        (tuple(row.ravel().tolist()), int(label)) for row, label in zip(pixels, y, strict=True)
    )


# --- sMNIST image folders ---------------------------------------------------------------------


def write_digit_folders(
    root: Path, rng: np.random.Generator
) -> dict[str, list[tuple[np.ndarray, int]]]:
    from PIL import Image

    written: dict[str, list[tuple[np.ndarray, int]]] = {}
    for split, digits in (("train", [3, 1, 4, 1, 5]), ("test", [9, 2, 6])):
        for i, digit in enumerate(digits):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{i}.png")
            written.setdefault(split, []).append((image, digit))
    return written


def test_smnist_reads_digit_folders(tmp_path):
    written = write_digit_folders(tmp_path, np.random.default_rng(0))
    data = load_task("smnist", data_dir=tmp_path, val_fraction=0.2)
    assert data.x_train.shape[1:] == (784, 1) and data.num_classes == 10
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (4, 1, 3)
    train_images = np.stack([image.ravel() for image, _ in written["train"]]) / 255
    train_labels = [digit for _, digit in written["train"]]
    assert sorted_pairs(
        np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    ) == sorted_pairs(train_images, train_labels)
    test_images = np.stack([image.ravel() for image, _ in written["test"]]) / 255
    assert sorted_pairs(data.x_test, data.y_test) == sorted_pairs(
        test_images, [digit for _, digit in written["test"]]
    )


def test_smnist_digit_folders_name_a_foreign_class(tmp_path):
    write_digit_folders(tmp_path, np.random.default_rng(1))
    (tmp_path / "test" / "ten").mkdir()
    with pytest.raises(ValueError, match=r"has classes \['ten'\] not among"):
        load_task("smnist", data_dir=tmp_path)


def test_smnist_error_names_both_layouts(tmp_path):
    with pytest.raises(ValueError, match=r"has no train-images-idx3-ubyte .* image folders"):
        load_task("smnist", data_dir=tmp_path)


# --- sCIFAR Python batches --------------------------------------------------------------------

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar_python(
    folder: Path, rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Two images per batch file, pickled as CIFAR-10's Python version stores them (protocol 2)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in BATCHES:
        images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 2)]
        planes = images.transpose(0, 3, 1, 2).reshape(2, 3072)  # R plane, G plane, B plane
        batch = {
            "batch_label": "testing",
            "data": planes,
            "labels": labels,
            "filenames": ["a", "b"],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = (images, labels)
    return written


def test_scifar_reads_python_batches(tmp_path):
    written = write_cifar_python(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    data = load_task("scifar", data_dir=tmp_path, normalize=False, val_fraction=0.1)
    assert data.x_train.shape[1:] == (1024, 3)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (9, 1, 2)
    test_images, test_labels = written["test_batch"]
    np.testing.assert_allclose(data.x_test, test_images.reshape(2, 1024, 3) / 255, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, test_labels)
    train_images = np.concatenate([written[name][0] for name in BATCHES[:5]]).reshape(10, 1024, 3)
    train_labels = [label for name in BATCHES[:5] for label in written[name][1]]
    assert sorted_pairs(
        np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    ) == sorted_pairs(train_images / 255, train_labels)


class _RunsACommand:
    def __reduce__(self):
        return (os.system, ("echo should never run",))


def test_scifar_python_batches_cannot_run_code(tmp_path):
    write_cifar_python(tmp_path, np.random.default_rng(1))
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({"data": _RunsACommand(), "labels": []}))
    with pytest.raises(
        ValueError, match=r"data_batch_2 is not a pickled dict .*system is not allowed"
    ):
        load_task("scifar", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 10]}, "labels outside 0..9"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, "1 labels for 2 images"),
        ({"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}, r"not uint8 \(N, 3072\)"),
        ({"pixels": np.zeros((2, 3072), np.uint8)}, "with 'data' and 'labels'"),
    ],
)
def test_scifar_malformed_python_batches_name_the_file(tmp_path, batch, message):
    write_cifar_python(tmp_path, np.random.default_rng(2))
    (tmp_path / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=f"data_batch_4.*{message}"):
        load_task("scifar", data_dir=tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(ValueError, match="data_batch_4 is missing"):
        load_task("scifar", data_dir=tmp_path)
