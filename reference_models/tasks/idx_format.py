"""Reader for the IDX files MNIST ships as (``*-idx3-ubyte``, ``*-idx1-ubyte``, maybe gzipped).

Layout: a big-endian magic number ``0x0000_08_nd`` (unsigned bytes, ``nd`` dimensions),
``nd`` big-endian uint32 sizes, then the values in C order.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

UNSIGNED_BYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        raise ValueError(f"IDX file {path} is not a valid gzip file: {error}") from error


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """The uint8 array of ``ndim`` dimensions stored in the IDX file ``path`` (``.gz`` allowed)."""
    raw = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path} is truncated: {len(raw)} bytes, shorter than its header")
    magic = int.from_bytes(raw[:4], "big")
    expected = (UNSIGNED_BYTE << 8) | ndim
    if magic != expected:
        raise ValueError(
            f"IDX file {path} has magic number {magic:#010x}, expected {expected:#010x} "
            f"(unsigned bytes, {ndim} dimensions)"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        problem = "truncated" if len(raw) - header < size else "longer than its shape says"
        raise ValueError(
            f"IDX file {path} is {problem}: {len(raw) - header} data bytes for shape {shape} "
            f"({size} bytes)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
