"""Token sequences as model inputs: integer ids kept compact, one-hot vectors made per batch.

The reference models read float features (batch, L, d_input) through a linear encoder, and a
linear map of a one-hot vector is an embedding lookup (plus a bias): one-hot inputs give the
models the token embedding of the LRA baselines without a change to them. A whole split as
float32 one-hot would not fit in memory (IMDB: 25000 x 4096 x 257 x 4 bytes = 105 GB), so
``OneHotTokens`` keeps the ids (uint8, or uint16 for more than 256 tokens) and expands only the
rows a batch asks for.

Text is read byte by byte, as LRA's ``tfds.deprecated.text.ByteTextEncoder`` does: byte ``b``
is token ``b + 1``, and token 0 (``PAD``) pads a sequence to its fixed length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

PAD = 0
BYTE_VOCAB_SIZE = 257  # PAD and the 256 byte values


def _one_hot(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.eye(vocab_size, dtype=np.float32)[ids]


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids 0..vocab_size-1."""
    return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16)


class OneHotTokens:
    """Token ids (N, L), each < ``vocab_size``, read as a float32 one-hot array (N, L, vocab_size).

    Indexing the first axis with an integer, an integer array or a boolean mask (what
    ``batches`` does) returns a dense float32 NumPy array; a slice returns another
    ``OneHotTokens`` on a view of the ids, like NumPy's basic indexing (no copy);
    ``np.asarray`` expands everything. ``dtype``, ``ndim``, ``shape`` and ``len`` are those of
    the dense array, so a ``SequenceDataset`` holds it as it would hold the array.

    >>> x = OneHotTokens(np.array([[2, 0, 1]], dtype=np.uint8), vocab_size=3)
    >>> x.shape, x[np.array([0])][0].tolist()
    ((1, 3, 3), [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, ids: np.ndarray, vocab_size: int) -> None:
        ids = np.asarray(ids)
        if (
            isinstance(vocab_size, bool)
            or not isinstance(vocab_size, (int, np.integer))
            or vocab_size < 1
        ):
            raise ValueError(f"`vocab_size` {vocab_size!r} must be a positive integer")
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"`ids` must be integer token ids (N, L), got {ids.dtype} {ids.shape}")
        if ids.size and not 0 <= ids.min() <= ids.max() < vocab_size:
            raise ValueError(
                f"`ids` hold tokens in [{ids.min()}, {ids.max()}], outside [0, vocab_size={vocab_size})"
            )
        self.ids = ids
        self.vocab_size = int(vocab_size)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.ids.shape, self.vocab_size)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: Any) -> np.ndarray | OneHotTokens:
        if isinstance(index, slice):
            view = object.__new__(OneHotTokens)
            view.ids, view.vocab_size = self.ids[index], self.vocab_size
            return view
        if isinstance(index, tuple):
            raise TypeError(
                f"OneHotTokens is indexed along its first axis only, got the index tuple {index!r}"
            )
        return _one_hot(self.ids[index], self.vocab_size)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        dense = _one_hot(self.ids, self.vocab_size)
        return dense if dtype is None else dense.astype(dtype)

    def __repr__(self) -> str:
        return f"OneHotTokens(N={len(self)}, L={self.ids.shape[1]}, vocab_size={self.vocab_size})"


def byte_ids(texts: Sequence[bytes], length: int) -> np.ndarray:
    """uint16 ids (len(texts), ``length``): byte ``b`` -> ``b + 1``, cut at ``length``, ``PAD`` after.

    >>> byte_ids([b"AB", b""], 3).tolist()
    [[66, 67, 0], [0, 0, 0]]
    """
    ids = np.full((len(texts), length), PAD, dtype=np.uint16)
    for row, text in zip(ids, texts, strict=True):
        kept = np.frombuffer(text[:length], dtype=np.uint8)
        row[: len(kept)] = kept.astype(np.uint16) + 1
    return ids
