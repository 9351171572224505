"""Readers for CIFAR-10 as distributed (binary or Python batches) and for image folders.

Binary (``cifar-10-batches-bin``): each record is 1 label byte then 3072 pixel bytes, 1024
per channel (R, G, B), each channel row-major 32x32. Python (``cifar-10-batches-py``, the
folder torchvision's ``CIFAR10`` reads): each batch file is a pickled dict whose ``data`` is a
uint8 array (N, 3072) in the same channel-plane order and whose ``labels`` is a list of N ints.
Folders (torchvision ``ImageFolder`` style): ``<split>/<class_name>/*.png``, classes numbered
in sorted name order.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

PIXELS = 32 * 32
RECORD_BYTES = 1 + 3 * PIXELS
NUM_CLASSES = 10
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixel sequences (N, 1024, 3) and int64 labels (N,) from one binary batch file."""
    if not path.is_file():
        raise ValueError(f"CIFAR-10 batch file {path} is missing")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise ValueError(
            f"CIFAR-10 batch file {path} has {raw.size} bytes, not a whole positive number of "
            f"{RECORD_BYTES}-byte records (truncated?)"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= NUM_CLASSES:
        raise ValueError(
            f"CIFAR-10 batch file {path} has label {labels.max()}, outside 0..{NUM_CLASSES - 1}"
        )
    pixels = records[:, 1:].reshape(-1, 3, PIXELS).transpose(0, 2, 1)
    return np.ascontiguousarray(pixels), labels


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, bytes and NumPy arrays only: a batch file cannot run code."""

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 spells bytes in Python 3
            return codecs.encode
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch file")


def read_cifar_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixel sequences (N, 1024, 3) and int64 labels (N,) from one Python batch file."""
    if not path.is_file():
        raise ValueError(f"CIFAR-10 batch file {path} is missing")
    try:
        with path.open("rb") as file:
            batch = _ArrayUnpickler(file, encoding="latin1").load()
        data = np.asarray(batch["data"])
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"CIFAR-10 batch file {path} is not a pickled dict with 'data' and 'labels': {error!r}"
        ) from error
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * PIXELS:
        raise ValueError(
            f"CIFAR-10 batch file {path}: data is {data.dtype} {data.shape}, not uint8 (N, 3072)"
        )
    if labels.shape != (len(data),) or (
        labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES
    ):
        raise ValueError(
            f"CIFAR-10 batch file {path}: {labels.size} labels for {len(data)} images, or labels "
            f"outside 0..{NUM_CLASSES - 1}"
        )
    pixels = data.reshape(-1, 3, PIXELS).transpose(0, 2, 1)
    return np.ascontiguousarray(pixels), labels


def _read_image(path: Path, mode: str) -> np.ndarray:
    """One image as uint8 (H, W, 3) for ``mode`` "RGB", (H, W) for "L" (grayscale)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"image file {path} cannot be read: {error}") from error


def read_image_folder(
    root: Path, class_names: list[str], *, mode: str = "RGB"
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixel sequences (N, H*W, C) and int64 labels (N,) from ``root/<class_name>/*``.

    C is 3 for ``mode`` "RGB" and 1 for "L" (grayscale, ITU-R 601 luma). Labels are indices
    into ``class_names``; a class folder not in it is a ValueError.
    """
    unknown = sorted({p.name for p in root.iterdir() if p.is_dir()} - set(class_names))
    if unknown:
        raise ValueError(f"image folder {root} has classes {unknown} not among {class_names}")
    images, labels = [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            image = _read_image(path, mode)
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"image file {path} is {image.shape[1]}x{image.shape[0]}, "
                    f"but the others are {images[0].shape[1]}x{images[0].shape[0]}"
                )
            images.append(image)
            labels.append(label)
    if not images:
        raise ValueError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    pixels = np.stack(images)
    return pixels.reshape(len(pixels), pixels.shape[1] * pixels.shape[2], -1), np.asarray(
        labels, dtype=np.int64
    )
