"""LRA Text: IMDB reviews read byte by byte, from a local ``aclImdb`` folder; nothing is downloaded.

The LRA release has no IMDB files: ``lra_benchmarks/text_classification/input_pipeline.py``
takes ``tfds.load('imdb_reviews')`` and encodes it with ``ByteTextEncoder``. The same reviews
ship as the Stanford archive ``aclImdb_v1.tar.gz``, read here: ``aclImdb/{train,test}/{pos,neg}/
*.txt`` (12500 files per folder; ``train/unsup`` is not used). Labels as in ``imdb_reviews``:
neg = 0, pos = 1. LRA validates on the test set; here ``val_fraction`` of the training reviews
are held out instead, so that nothing is selected on test data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import SequenceDataset
from .lra_files import find_task_folder
from .lra_tokens import BYTE_VOCAB_SIZE, OneHotTokens, byte_ids
from .splits import check_fraction, check_positive, split_off, take_at_most

LABELS = ("neg", "pos")
EXPECTED = "aclImdb/{train,test}/{pos,neg}/*.txt (the Stanford IMDB archive)"


def read_reviews(split_dir: Path) -> tuple[list[bytes], np.ndarray]:
    """The raw bytes of every ``*.txt`` under ``split_dir/{neg,pos}`` (sorted by name), and labels."""
    texts, labels = [], []
    for label, name in enumerate(LABELS):
        folder = split_dir / name
        if not folder.is_dir():
            raise ValueError(f"task 'imdb': the folder {folder} is missing; expected {EXPECTED}")
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise ValueError(f"task 'imdb': the folder {folder} holds no *.txt reviews")
        texts += [path.read_bytes() for path in files]
        labels += [label] * len(files)
    return texts, np.asarray(labels, dtype=np.int64)


def load_imdb(
    *,
    seed: int = 0,
    data_dir: str | Path | None = None,
    max_length: int = 4096,
    val_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceDataset:
    """IMDB sentiment as one-hot byte sequences (N, ``max_length``, 257), 2 classes.

    Reviews are cut at ``max_length`` bytes (4096 as in the S4/S5/CompreSSM setups; LRA's
    configs use 1000 or 4000) and padded with token 0. ``seed`` draws the ``max_train``/
    ``max_test`` subsets and the validation split of the training reviews.
    """
    check_positive("max_length", max_length)
    check_fraction("val_fraction", val_fraction)
    check_positive("max_train", max_train, allow_none=True)
    check_positive("max_test", max_test, allow_none=True)
    folder = find_task_folder(data_dir, "imdb", "aclImdb", "train", EXPECTED)
    rng = np.random.default_rng(seed)
    splits = {}
    for split, max_n in (("train", max_train), ("test", max_test)):
        texts, labels = read_reviews(folder / split)
        splits[split] = take_at_most(byte_ids(texts, max_length), labels, max_n, rng)
    x_train, y_train, x_val, y_val = split_off(*splits["train"], val_fraction, rng)
    x_test, y_test = splits["test"]
    return SequenceDataset(
        "imdb",
        "classification",
        OneHotTokens(x_train, BYTE_VOCAB_SIZE),
        y_train,
        OneHotTokens(x_val, BYTE_VOCAB_SIZE),
        y_val,
        OneHotTokens(x_test, BYTE_VOCAB_SIZE),
        y_test,
        num_classes=len(LABELS),
    )
