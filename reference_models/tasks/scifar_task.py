"""Sequential CIFAR-10 from a local folder (binary or Python batches, or image folders); nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .cifar_format import NUM_CLASSES, read_cifar_binary, read_cifar_pickle, read_image_folder
from .dataset import SequenceDataset
from .local_files import existing_dir
from .splits import check_fraction, check_positive, split_off, standardise, take_at_most

BINARY_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
BINARY_TEST_FILE = "test_batch.bin"
PYTHON_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
PYTHON_TEST_FILE = "test_batch"
GRAYSCALE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as torchvision
LocalCifar = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]
EXPECTED = (
    "cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin, cifar-10-batches-py/"
    "{data_batch_1..5,test_batch}, or train/<class>/*.png and test/<class>/*.png"
)


def _read_batches(
    folder: Path,
    reader: Callable[[Path], tuple[np.ndarray, np.ndarray]],
    train_files: tuple[str, ...],
    test_file: str,
) -> LocalCifar:
    """The five training batches and the test batch of ``folder``, read by ``reader``."""
    train = [reader(folder / name) for name in train_files]
    x_test, y_test = reader(folder / test_file)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test, NUM_CLASSES


def _read_folders(data_dir: Path) -> LocalCifar:
    """``data_dir/{train,test}/<class_name>/*`` with the classes found under train/."""
    class_names = sorted(p.name for p in (data_dir / "train").iterdir() if p.is_dir())
    if not class_names:
        raise ValueError(f"`data_dir` {data_dir}: train/ has no class folders")
    x_train, y_train = read_image_folder(data_dir / "train", class_names)
    x_test, y_test = read_image_folder(data_dir / "test", class_names)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"`data_dir` {data_dir}: train images have {x_train.shape[1]} pixels, "
            f"test images {x_test.shape[1]}"
        )
    return x_train, y_train, x_test, y_test, len(class_names)


def _read_local_cifar(data_dir: Path) -> LocalCifar:
    """uint8 x_train, int64 y_train, x_test, y_test (pixel sequences (N, L, 3)), num_classes."""
    for folder in (data_dir / "cifar-10-batches-bin", data_dir):
        if (folder / BINARY_TEST_FILE).is_file():
            return _read_batches(folder, read_cifar_binary, BINARY_TRAIN_FILES, BINARY_TEST_FILE)
    for folder in (data_dir / "cifar-10-batches-py", data_dir):
        if (folder / PYTHON_TEST_FILE).is_file():
            return _read_batches(folder, read_cifar_pickle, PYTHON_TRAIN_FILES, PYTHON_TEST_FILE)
    if (data_dir / "train").is_dir() and (data_dir / "test").is_dir():
        return _read_folders(data_dir)
    raise ValueError(f"`data_dir` {data_dir} holds none of: {EXPECTED}")


def load_scifar(
    *,
    seed: int = 0,
    data_dir: str | Path | None = None,
    grayscale: bool = False,
    normalize: bool = True,
    val_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceDataset:
    """CIFAR-10 read pixel by pixel: (N, 1024, 3) sequences, or (N, 1024, 1) if ``grayscale``.

    Pixels are scaled to [0, 1], and with ``normalize`` standardised per channel with the
    statistics of the training split. ``seed`` draws the ``max_train``/``max_test`` subsets
    and the validation split of the training images.
    """
    check_fraction("val_fraction", val_fraction)
    check_positive("max_train", max_train, allow_none=True)
    check_positive("max_test", max_test, allow_none=True)
    folder = existing_dir(data_dir, "scifar", EXPECTED)
    x_train, y_train, x_test, y_test, num_classes = _read_local_cifar(folder)
    rng = np.random.default_rng(seed)
    x_train, y_train = take_at_most(x_train, y_train, max_train, rng)
    x_test, y_test = take_at_most(x_test, y_test, max_test, rng)

    def as_sequences(pixels: np.ndarray) -> np.ndarray:
        x = pixels.astype(np.float32) / 255
        return x @ GRAYSCALE_WEIGHTS[:, None] if grayscale else x

    x_train, y_train, x_val, y_val = split_off(as_sequences(x_train), y_train, val_fraction, rng)
    x_test = as_sequences(x_test)
    if normalize:
        x_train, x_val, x_test = standardise(x_train, x_val, x_test)
    return SequenceDataset(
        "scifar",
        "classification",
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        num_classes=num_classes,
    )
