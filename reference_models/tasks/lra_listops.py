"""LRA ListOps from a local copy of the LRA release; nothing is downloaded.

Layout (written by ``lra_benchmarks/data/listops.py``, read by
``lra_benchmarks/listops/input_pipeline.py``): ``listops-1000/basic_train.tsv``,
``basic_val.tsv`` and ``basic_test.tsv`` (96000 / 2000 / 2000 rows), tab-separated, a header
row ``Source<TAB>Target``, then one expression per row and its value 0..9, e.g.
``( ( ( [MAX 2 9 ) 4 ) ] )<TAB>9``.

Tokens are the whitespace-separated words without the parentheses, which only mirror the
bracketing that ``[OP ... ]`` already spells (the S4/S5 and CompreSSM pipelines drop them too);
``]`` stays a token. The vocabulary is fixed, ``LISTOPS_TOKENS``, with ``<pad>`` = 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .dataset import SequenceDataset
from .lra_files import find_task_folder, split_file
from .lra_tokens import PAD, OneHotTokens, id_dtype
from .splits import check_positive, take_at_most

LISTOPS_TOKENS = ("<pad>", "[MIN", "[MAX", "[MED", "[SM", "]", *(str(d) for d in range(10)))
TOKEN_IDS = {token: i for i, token in enumerate(LISTOPS_TOKENS)}
DROPPED = frozenset({"(", ")"})
FILES = {split: f"basic_{split}.tsv" for split in ("train", "val", "test")}
EXPECTED = "listops-1000/basic_{train,val,test}.tsv of the LRA release (columns Source, Target)"
NUM_CLASSES = 10


def _token_ids(source: str, path: Path, line: int) -> list[int]:
    ids = [TOKEN_IDS.get(token, -1) for token in source.split() if token not in DROPPED]
    if -1 in ids:
        unknown = sorted({t for t in source.split() if t not in TOKEN_IDS and t not in DROPPED})
        raise ValueError(
            f"ListOps file {path}, line {line}: unknown tokens {unknown}; known: {LISTOPS_TOKENS[1:]}"
        )
    return ids


def read_listops_tsv(path: Path, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 token ids (N, ``max_length``), cut or ``PAD``-ded, and int64 values (N,) of one file."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file, delimiter="\t"))
    header = rows[0] if rows else []
    if "Source" not in header or "Target" not in header:
        raise ValueError(
            f"ListOps file {path} has header {header}, expected the columns Source and Target"
        )
    source, target = header.index("Source"), header.index("Target")
    ids = np.full((len(rows) - 1, max_length), PAD, dtype=id_dtype(len(LISTOPS_TOKENS)))
    labels = np.empty(len(rows) - 1, dtype=np.int64)
    for i, row in enumerate(rows[1:]):
        line = i + 2
        if len(row) != len(header):
            raise ValueError(
                f"ListOps file {path}, line {line}: {len(row)} fields, the header has {len(header)}"
            )
        try:
            labels[i] = int(row[target])
        except ValueError:
            raise ValueError(
                f"ListOps file {path}, line {line}: Target {row[target]!r} is not an integer"
            ) from None
        if not 0 <= labels[i] < NUM_CLASSES:
            raise ValueError(
                f"ListOps file {path}, line {line}: Target {labels[i]} is outside 0..9"
            )
        tokens = _token_ids(row[source], path, line)[:max_length]
        ids[i, : len(tokens)] = tokens
    if not len(labels):
        raise ValueError(f"ListOps file {path} has no rows below its header")
    return ids, labels


def load_listops(
    *,
    seed: int = 0,
    data_dir: str | Path | None = None,
    max_length: int = 2000,
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceDataset:
    """ListOps as one-hot token sequences (N, ``max_length``, 16), 10 classes (the value).

    The release's own train/val/test files are the splits; expressions are cut at
    ``max_length`` tokens (2000, LRA's setting, cuts none) and padded with ``<pad>``. ``seed``
    draws the ``max_train``/``max_test`` subsets.
    """
    check_positive("max_length", max_length)
    check_positive("max_train", max_train, allow_none=True)
    check_positive("max_test", max_test, allow_none=True)
    folder = find_task_folder(data_dir, "listops", "listops-1000", FILES["train"], EXPECTED)
    splits = {
        split: read_listops_tsv(split_file(folder, name, "listops"), max_length)
        for split, name in FILES.items()
    }
    rng = np.random.default_rng(seed)
    x_train, y_train = take_at_most(*splits["train"], max_train, rng)
    x_test, y_test = take_at_most(*splits["test"], max_test, rng)
    x_val, y_val = splits["val"]
    vocab = len(LISTOPS_TOKENS)
    return SequenceDataset(
        "listops",
        "classification",
        OneHotTokens(x_train, vocab),
        y_train,
        OneHotTokens(x_val, vocab),
        y_val,
        OneHotTokens(x_test, vocab),
        y_test,
        num_classes=NUM_CLASSES,
    )
