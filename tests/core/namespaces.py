"""Moving test data between NumPy and the namespace under test, and checking where results live."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest
from strategies import Dense, Diagonal

import compressm_core as cc

#: For Hypothesis tests and checks of NumPy-like behaviour: the namespaces without compilation.
#: JAX compiles every operation anew for each new shape (about a second per call), so it runs
#: the tests on fixed examples only.
eager_only = pytest.mark.namespaces("numpy", "array_api_strict", "torch")

#: For the costlier property tests: NumPy and one framework.
numpy_and_torch = pytest.mark.namespaces("numpy", "torch")


def to_np(x) -> np.ndarray:
    """A NumPy copy of an array of any namespace."""
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu()
    return np.asarray(x)


def assert_in_namespace(result, xp) -> None:
    """``result`` is an array of the namespace ``xp``."""
    assert array_api_compat.array_namespace(result).__name__ == xp.__name__


def as_xp(xp, a):
    """``a`` (NumPy or None) as an array of ``xp``, keeping its dtype."""
    return None if a is None else xp.asarray(np.array(a))


def state_space(xp, A, B, C, D=None) -> cc.StateSpace:
    return cc.StateSpace(as_xp(xp, A), as_xp(xp, B), as_xp(xp, C), as_xp(xp, D))


def diagonal_state_space(xp, poles, B, C, D=None) -> cc.DiagonalStateSpace:
    return cc.DiagonalStateSpace(as_xp(xp, poles), as_xp(xp, B), as_xp(xp, C), as_xp(xp, D))


def numpy_system(system: cc.StateSpace | cc.DiagonalStateSpace) -> Dense | Diagonal:
    """A system of any namespace as NumPy arrays."""
    D = None if system.D is None else to_np(system.D)
    if isinstance(system, cc.DiagonalStateSpace):
        return Diagonal(to_np(system.poles), to_np(system.B), to_np(system.C), D)
    return Dense(to_np(system.A), to_np(system.B), to_np(system.C), D)
