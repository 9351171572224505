"""Controllability and observability Gramians and their square-root factors, batched.

Controllability:  A P A^H - P + B B^H = 0
Observability:    A^H Q A - Q + C^H C = 0

Diagonal systems use the closed (Cauchy-like) form, O(n^2 (m + p)); dense systems
the matmul-only doubling solver.
"""

from __future__ import annotations

from typing import Any, Literal

from . import _array as _a
from .lyapunov import diagonal_lyapunov, solve_discrete_lyapunov
from .systems import DiagonalStateSpace, System, check_stable

Array = Any
FactorMethod = Literal["auto", "cholesky", "eigh"]


def controllability_gramian(sys: System) -> Array:
    """P with ``A P A^H - P + B B^H = 0``, shape (..., n, n)."""
    check_stable(sys)
    xp = sys.xp
    BBh = sys.B @ _a.mH(sys.B, xp)
    if isinstance(sys, DiagonalStateSpace):
        return diagonal_lyapunov(xp.astype(sys.poles, xp.result_type(sys.poles, BBh)), BBh, xp)
    return solve_discrete_lyapunov(sys.A, BBh, xp=xp)


def observability_gramian(sys: System) -> Array:
    """Q with ``A^H Q A - Q + C^H C = 0``, shape (..., n, n)."""
    check_stable(sys)
    xp = sys.xp
    ChC = _a.mH(sys.C, xp) @ sys.C
    if isinstance(sys, DiagonalStateSpace):
        poles = xp.astype(sys.poles, xp.result_type(sys.poles, ChC))
        return diagonal_lyapunov(_a.conj(poles, xp), ChC, xp)
    return solve_discrete_lyapunov(_a.mH(sys.A, xp), ChC, xp=xp)


def gramians(sys: System) -> tuple[Array, Array]:
    """The controllability and observability Gramians ``(P, Q)``, each (..., n, n).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from compressm_core import DiagonalStateSpace
    >>> P, Q = gramians(DiagonalStateSpace(xp.asarray([0.5]), xp.asarray([[1.0]]), xp.asarray([[1.0]])))
    >>> round(float(P[0, 0]), 12), round(float(Q[0, 0]), 12)  # 1 / (1 - 0.25)
    (1.333333333333, 1.333333333333)
    """
    return controllability_gramian(sys), observability_gramian(sys)


def _eigh_factor(X: Array, xp: Any) -> Array:
    """L = V sqrt(max(w, 0)) from X = V diag(w) V^H: exact for semidefinite X."""
    w, V = xp.linalg.eigh(X)
    root = xp.sqrt(xp.clip(w, min=0.0))
    return V * xp.astype(root, V.dtype)[..., None, :]


def _cholesky_or_none(X: Array, xp: Any) -> Array | None:
    """Lower Cholesky factor, or None when X is not numerically positive definite."""
    cholesky_ex = getattr(xp.linalg, "cholesky_ex", None)  # torch: no host sync, no raise
    try:
        if cholesky_ex is not None:
            L, info = cholesky_ex(X)
            return L if not bool(xp.any(info != 0)) else None
        L = xp.linalg.cholesky(X)
    except (ValueError, RuntimeError):  # numpy LinAlgError is a ValueError, torch's a RuntimeError
        return None
    return L if bool(xp.all(xp.isfinite(L))) else None  # JAX returns NaN instead of raising


def gramian_factor(X: Array, *, method: FactorMethod = "auto", xp: Any = None) -> Array:
    """A square-root factor L with ``X = L L^H`` of a Hermitian semidefinite X, (..., n, n).

    "cholesky": lower-triangular Cholesky factor (X must be positive definite).
    "eigh": ``V diag(sqrt(w))`` from the eigendecomposition; valid for singular X
    (uncontrollable or unobservable states). "auto": Cholesky, and eigh where it fails.
    """
    xp = _a.namespace(X, xp=xp)
    if method == "eigh":
        return _eigh_factor(X, xp)
    if method not in ("auto", "cholesky"):
        msg = f"`method` {method!r} is unknown; choose 'auto', 'cholesky' or 'eigh'"
        raise ValueError(msg)
    L = _cholesky_or_none(X, xp)
    if L is not None:
        return L
    if method == "cholesky":
        msg = "the Gramian is not numerically positive definite; use method='eigh' (or 'auto')"
        raise ValueError(msg)
    return _eigh_factor(X, xp)


def gramian_factors(sys: System, *, method: FactorMethod = "auto") -> tuple[Array, Array]:
    """Factors ``(Lp, Lq)`` with ``P = Lp Lp^H`` and ``Q = Lq Lq^H``, each (..., n, n), of one dtype."""
    xp = sys.xp
    P, Q = gramians(sys)
    dtype = xp.result_type(P.dtype, Q.dtype)  # P is complex for complex B, Q for complex C
    P, Q = xp.astype(P, dtype), xp.astype(Q, dtype)
    return gramian_factor(P, method=method), gramian_factor(Q, method=method)
