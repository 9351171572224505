"""LRA Retrieval (AAN): do two papers cite one another? From a local copy of the LRA release.

Layout (read by ``lra_benchmarks/matching/input_pipeline.py``):
``lra_release/lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv``, tab-separated, no
header, no quoting, five fields per line: ``label`` (0 or 1, written as a number such as
``1.0``), ``id1``, ``id2``, ``text1``, ``text2``. The texts are read byte by byte (LRA's
``tokenizer='char'``, a ``ByteTextEncoder``).

Pairing (our choice): LRA's baselines encode the two documents separately with one shared
encoder and classify the pair of embeddings; the reference models read one sequence, so a pair
is the two documents one after the other, each cut or padded to ``max_length``:
``x[:, :max_length]`` is document 1 and ``x[:, max_length:]`` document 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import SequenceDataset
from .lra_files import find_task_folder, split_file
from .lra_tokens import BYTE_VOCAB_SIZE, OneHotTokens, byte_ids
from .splits import check_positive, take_at_most

FILES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
EXPECTED = "tsv_data/new_aan_pairs.{train,eval,test}.tsv of the LRA release (label, id1, id2, text1, text2)"
FIELDS = 5


def _label(field: bytes, path: Path, line: int) -> int:
    try:
        value = float(field)
    except ValueError:
        value = float("nan")
    if value not in (0.0, 1.0):
        raise ValueError(f"AAN file {path}, line {line}: label {field!r} is neither 0 nor 1")
    return int(value)


def read_aan_tsv(path: Path) -> tuple[list[bytes], list[bytes], np.ndarray]:
    """The first and second texts (raw bytes) and int64 labels (N,) of one file."""
    first, second, labels = [], [], []
    for i, raw in enumerate(path.read_bytes().split(b"\n")):
        line = raw.rstrip(b"\r")
        if not line:
            continue
        fields = line.split(b"\t")
        if len(fields) != FIELDS:
            raise ValueError(
                f"AAN file {path}, line {i + 1}: {len(fields)} tab-separated fields, expected "
                f"{FIELDS} (label, id1, id2, text1, text2)"
            )
        labels.append(_label(fields[0], path, i + 1))
        first.append(fields[3])
        second.append(fields[4])
    if not labels:
        raise ValueError(f"AAN file {path} holds no pairs")
    return first, second, np.asarray(labels, dtype=np.int64)


def load_aan(
    *,
    seed: int = 0,
    data_dir: str | Path | None = None,
    max_length: int = 4000,
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceDataset:
    """AAN pairs as one-hot byte sequences (N, 2 * ``max_length``, 257), 2 classes.

    Each document is cut at ``max_length`` bytes (LRA's 4000) and padded with token 0; see the
    module docstring for the pairing. The release's train/eval/test files are the
    train/validation/test splits; ``seed`` draws the ``max_train``/``max_test`` subsets.
    """
    check_positive("max_length", max_length)
    check_positive("max_train", max_train, allow_none=True)
    check_positive("max_test", max_test, allow_none=True)
    folder = find_task_folder(data_dir, "aan", "tsv_data", FILES["train"], EXPECTED)
    rng = np.random.default_rng(seed)
    splits = {}
    for split, name in FILES.items():
        first, second, labels = read_aan_tsv(split_file(folder, name, "aan"))
        ids = np.concatenate([byte_ids(first, max_length), byte_ids(second, max_length)], axis=1)
        splits[split] = (ids, labels)
    x_train, y_train = take_at_most(*splits["train"], max_train, rng)
    x_test, y_test = take_at_most(*splits["test"], max_test, rng)
    x_val, y_val = splits["val"]
    return SequenceDataset(
        "aan",
        "classification",
        OneHotTokens(x_train, BYTE_VOCAB_SIZE),
        y_train,
        OneHotTokens(x_val, BYTE_VOCAB_SIZE),
        y_val,
        OneHotTokens(x_test, BYTE_VOCAB_SIZE),
        y_test,
        num_classes=2,
    )
