"""Discrete-time linear state space systems, dense and diagonal, batched.

``StateSpace``:          x[k+1] = A x[k] + B u[k],            y[k] = C x[k] + D u[k]
``DiagonalStateSpace``:  x[k+1] = diag(poles) x[k] + B u[k],  y[k] = C x[k] + D u[k]

Shapes put batch dimensions first: A (..., n, n) or poles (..., n), B (..., n, m),
C (..., p, n), D (..., p, m). Both are frozen dataclasses: "changing" a system
means building a new one, so an old one can always be kept (e.g. for rollback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _array as _a

Array = Any


def _check_values(name: str, x: Array, xp: Any) -> None:
    _a.check_floating(name, x, xp)
    _a.check_finite(name, x, xp)


def _check_order(n: int, state_name: str) -> None:
    if n == 0:
        msg = f"`{state_name}` describes a system with no states (n = 0); a system needs n >= 1"
        raise ValueError(msg)


def _check_io_shapes(n: int, B: Array, C: Array, D: Array | None, state_name: str) -> None:
    if B.ndim < 2 or B.shape[-2] != n:
        msg = f"`B` must have shape (..., n, m) with n = {n} from `{state_name}`, got {tuple(B.shape)}"
        raise ValueError(msg)
    if C.ndim < 2 or C.shape[-1] != n:
        msg = f"`C` must have shape (..., p, n) with n = {n} from `{state_name}`, got {tuple(C.shape)}"
        raise ValueError(msg)
    if D is not None and (D.ndim < 2 or D.shape[-2:] != (C.shape[-2], B.shape[-1])):
        msg = (
            f"`D` must have shape (..., p, m) = (..., {C.shape[-2]}, {B.shape[-1]}), "
            f"got {tuple(D.shape)}"
        )
        raise ValueError(msg)


@dataclass(frozen=True)
class StateSpace:
    """A (batch of) dense discrete-time system(s) ``(A, B, C, D)``; ``D=None`` means zero.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> sys = StateSpace(xp.asarray([[0.5]]), xp.asarray([[1.0]]), xp.asarray([[2.0]]))
    >>> sys.n, sys.m, sys.p
    (1, 1, 1)
    """

    A: Array
    B: Array
    C: Array
    D: Array | None = None

    def __post_init__(self) -> None:
        xp = _a.namespace(self.A, self.B, self.C, self.D)
        _a.check_square("A", self.A)
        _check_order(self.A.shape[-1], "A")
        _check_io_shapes(self.A.shape[-1], self.B, self.C, self.D, "A")
        for name in ("A", "B", "C", "D"):
            value = getattr(self, name)
            if value is not None:
                _check_values(name, value, xp)
        _a.batch_shape(self.A.shape[:-2], self.B.shape[:-2], self.C.shape[:-2])

    @property
    def xp(self) -> Any:
        return _a.namespace(self.A, self.B, self.C, self.D)

    @property
    def n(self) -> int:
        return self.A.shape[-1]

    @property
    def m(self) -> int:
        return self.B.shape[-1]

    @property
    def p(self) -> int:
        return self.C.shape[-2]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return _a.batch_shape(self.A.shape[:-2], self.B.shape[:-2], self.C.shape[:-2])

    @property
    def dtype(self) -> Any:
        return _a.result_dtype(self.xp, self.A, self.B, self.C, self.D)

    def feedthrough(self) -> Array:
        """``D``, or zeros of shape (..., p, m) when it is None."""
        if self.D is not None:
            return self.D
        xp = self.xp
        return xp.zeros((*self.batch_shape, self.p, self.m), dtype=self.dtype, device=_a.device_of(self.A))


@dataclass(frozen=True)
class DiagonalStateSpace:
    """A (batch of) discrete-time system(s) with diagonal ``A = diag(poles)``: the LRU/S5 form.

    ``poles`` is (..., n), usually complex. ``to_dense()`` gives the equivalent ``StateSpace``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> dsys = DiagonalStateSpace(xp.asarray([0.5, -0.25]), xp.ones((2, 1)), xp.ones((1, 2)))
    >>> dsys.to_dense().A.shape
    (2, 2)
    """

    poles: Array
    B: Array
    C: Array
    D: Array | None = None

    def __post_init__(self) -> None:
        xp = _a.namespace(self.poles, self.B, self.C, self.D)
        if self.poles.ndim < 1:
            msg = f"`poles` must have shape (..., n), got {tuple(self.poles.shape)}"
            raise ValueError(msg)
        _check_order(self.poles.shape[-1], "poles")
        _check_io_shapes(self.poles.shape[-1], self.B, self.C, self.D, "poles")
        for name in ("poles", "B", "C", "D"):
            value = getattr(self, name)
            if value is not None:
                _check_values(name, value, xp)
        _a.batch_shape(self.poles.shape[:-1], self.B.shape[:-2], self.C.shape[:-2])

    @property
    def xp(self) -> Any:
        return _a.namespace(self.poles, self.B, self.C, self.D)

    @property
    def n(self) -> int:
        return self.poles.shape[-1]

    @property
    def m(self) -> int:
        return self.B.shape[-1]

    @property
    def p(self) -> int:
        return self.C.shape[-2]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return _a.batch_shape(self.poles.shape[:-1], self.B.shape[:-2], self.C.shape[:-2])

    @property
    def dtype(self) -> Any:
        return _a.result_dtype(self.xp, self.poles, self.B, self.C, self.D)

    @property
    def A(self) -> Array:
        """The dense diagonal state matrix, (..., n, n)."""
        return _a.diag_embed(self.poles, self.xp)

    def feedthrough(self) -> Array:
        """``D``, or zeros of shape (..., p, m) when it is None."""
        if self.D is not None:
            return self.D
        xp = self.xp
        return xp.zeros(
            (*self.batch_shape, self.p, self.m), dtype=self.dtype, device=_a.device_of(self.poles)
        )

    def to_dense(self) -> StateSpace:
        """The same system as a ``StateSpace`` with a dense (diagonal) ``A``."""
        return StateSpace(self.A, self.B, self.C, self.D)


System = StateSpace | DiagonalStateSpace


def check_stable(sys: System, name: str = "sys") -> None:
    """Raise ValueError when a diagonal system has a pole with |lambda| >= 1.

    Dense systems are checked by the Lyapunov solvers themselves (the doubling
    iteration does not converge for them), which avoids an eigendecomposition here.
    """
    if not isinstance(sys, DiagonalStateSpace):
        return
    xp = sys.xp
    modulus = xp.abs(sys.poles)
    worst = xp.max(modulus)
    if _a.concrete_bool(worst < 1) is False:
        index = int(xp.argmax(xp.reshape(modulus, (-1,))))
        msg = (
            f"`{name}` is not stable: a pole has modulus {float(worst):.6g} >= 1 "
            f"(flat index {index} of poles with shape {tuple(sys.poles.shape)}); "
            "Gramians and Hankel singular values exist only for stable systems"
        )
        raise ValueError(msg)
