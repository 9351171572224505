"""Readers for CIFAR-10 as distributed in binary (``cifar-10-batches-bin``) or as image folders.

Binary: each record is 1 label byte then 3072 pixel bytes, 1024 per channel (R, G, B),
each channel row-major 32x32. Folders (torchvision ``ImageFolder`` style):
``<split>/<class_name>/*.png``, classes numbered in sorted name order.
"""

from __future__ import annotations

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


def _read_rgb(path: Path) -> np.ndarray:
    """One image as uint8 (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"image file {path} cannot be read: {error}") from error


def read_image_folder(root: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixel sequences (N, H*W, 3) and int64 labels (N,) from ``root/<class_name>/*``.

    Labels are indices into ``class_names``; a class folder not in it is a ValueError.
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
            image = _read_rgb(path)
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
    return pixels.reshape(len(pixels), -1, 3), np.asarray(labels, dtype=np.int64)
