"""Sequential (and permuted) MNIST from a local folder; nothing is downloaded.

The folder holds the IDX files MNIST ships as (``train-images-idx3-ubyte`` etc., maybe
gzipped), directly or in torchvision's ``MNIST/raw``; or PNG image folders in torchvision
``ImageFolder`` style, ``train/<digit>/*.png`` and ``test/<digit>/*.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cifar_format import read_image_folder
from .dataset import SequenceDataset
from .idx_format import read_idx
from .local_files import existing_dir
from .splits import check_fraction, check_positive, split_off, take_at_most

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
PERMUTATION_SEED = 0  # one fixed pixel order for permuted MNIST, whatever the `seed`
DIGITS = [str(d) for d in range(10)]


def _find_idx_file(data_dir: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``data_dir`` or in torchvision's ``data_dir/MNIST/raw``."""
    for folder in (data_dir, data_dir / "MNIST" / "raw"):
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _require_idx_file(data_dir: Path, stem: str) -> Path:
    path = _find_idx_file(data_dir, stem)
    if path is None:
        raise ValueError(
            f"`data_dir` {data_dir} has no {stem} (nor {stem}.gz, nor under MNIST/raw), "
            "and no train/<digit>/*.png and test/<digit>/*.png image folders"
        )
    return path


def _read_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W) and int64 labels (N,) of ``split`` ("train" or "test")."""
    images_path = _require_idx_file(data_dir, IDX_FILES[f"{split}_images"])
    labels_path = _require_idx_file(data_dir, IDX_FILES[f"{split}_labels"])
    images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise ValueError(
            f"IDX file {labels_path} has {len(labels)} labels for {len(images)} images"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"IDX file {labels_path} has label {labels.max()}, outside 0..9")
    return images, labels.astype(np.int64)


def _read_local_mnist(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train images, labels, test images, labels, images uint8 (N, H, W) from IDX files, or
    (N, H*W, 1) from grayscale image folders (read when there are no IDX files)."""
    has_idx = _find_idx_file(data_dir, IDX_FILES["train_images"]) is not None
    if not has_idx and (data_dir / "train").is_dir() and (data_dir / "test").is_dir():
        train = read_image_folder(data_dir / "train", DIGITS, mode="L")
        return (*train, *read_image_folder(data_dir / "test", DIGITS, mode="L"))
    return (*_read_split(data_dir, "train"), *_read_split(data_dir, "test"))


def load_smnist(
    *,
    seed: int = 0,
    data_dir: str | Path | None = None,
    permute: bool = False,
    val_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceDataset:
    """MNIST read pixel by pixel: (N, 784, 1) sequences in [0, 1], 10 classes.

    ``permute`` reorders the pixels by one fixed permutation (psMNIST). ``seed`` draws the
    ``max_train``/``max_test`` subsets and the validation split of the training images.
    """
    check_fraction("val_fraction", val_fraction)
    check_positive("max_train", max_train, allow_none=True)
    check_positive("max_test", max_test, allow_none=True)
    folder = existing_dir(
        data_dir, "smnist", "the MNIST IDX files or train/ and test/ digit folders"
    )
    train_images, train_labels, test_images, test_labels = _read_local_mnist(folder)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"`data_dir` {folder}: train images are {train_images.shape[1:]}, "
            f"test images {test_images.shape[1:]}"
        )
    rng = np.random.default_rng(seed)
    train_images, train_labels = take_at_most(train_images, train_labels, max_train, rng)
    test_images, test_labels = take_at_most(test_images, test_labels, max_test, rng)
    length = train_images.shape[1] * train_images.shape[2]
    order = (
        np.random.default_rng(PERMUTATION_SEED).permutation(length)
        if permute
        else np.arange(length)
    )

    def as_sequences(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), length)[:, order, None].astype(np.float32) / 255

    x_train, y_train, x_val, y_val = split_off(
        as_sequences(train_images), train_labels, val_fraction, rng
    )
    return SequenceDataset(
        "smnist",
        "classification",
        x_train,
        y_train,
        x_val,
        y_val,
        as_sequences(test_images),
        test_labels,
        num_classes=10,
    )
