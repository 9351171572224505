"""Framework-free checks shared by the PyTorch and JAX reference models."""

from __future__ import annotations

import operator
from collections.abc import Iterable


def checked_state_indices(keep: Iterable[int], state_dim: int) -> list[int]:
    """``keep`` as a list of Python ints; ValueError unless it is non-empty, unique and in
    ``[0, state_dim)``. Integer NumPy, PyTorch and JAX scalars are accepted (``__index__``)."""
    try:
        indices = [operator.index(i) for i in keep]
    except TypeError as error:
        msg = f"`keep` must be a sequence of ints, got {keep!r}"
        raise ValueError(msg) from error
    if not indices:
        msg = "`keep` is empty; keep at least one state index"
        raise ValueError(msg)
    outside = [i for i in indices if not 0 <= i < state_dim]
    if outside:
        msg = f"`keep` has indices {outside} outside [0, state_dim={state_dim})"
        raise ValueError(msg)
    if len(set(indices)) != len(indices):
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        msg = f"`keep` repeats the indices {repeated}"
        raise ValueError(msg)
    return indices


def is_lru_ring(r_min: float, r_max: float) -> bool:
    """Whether ``0 <= r_min <= r_max < 1`` and ``r_max > 0``: the LRU's initial poles lie on the
    ring ``r_min <= |lambda| <= r_max``, strictly inside the unit circle (``|lambda| = 1`` would
    be ``nu_log = log(0)``) and not all at 0 (``nu_log = +inf``, whose gradient is NaN)."""
    return 0 <= r_min <= r_max < 1 and r_max > 0


def check_lru_ring(r_min: float, r_max: float) -> None:
    """ValueError unless ``is_lru_ring(r_min, r_max)``."""
    if not is_lru_ring(r_min, r_max):
        msg = f"LRU needs 0 <= `r_min` <= `r_max` < 1 and `r_max` > 0 (the moduli of the initial poles), got r_min={r_min}, r_max={r_max}"
        raise ValueError(msg)
