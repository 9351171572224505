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
    """L = V sqrt(w) from X = V diag(w) V^H, exact for semidefinite X.

    Eigenvalues at or below the rounding level of X (``n * eps * max|w|``) are set to zero: they
    cannot be told from 0, and keeping their noise (clipping only the negative ones) would put
    columns of size sqrt(eps ||X||) into L, which moves the small HSVs by about sqrt(eps) sigma_1.
    """
    w, V = xp.linalg.eigh(X)
    level = X.shape[-1] * _a.eps(w.dtype, xp) * xp.max(xp.abs(w), axis=-1, keepdims=True)
    root = xp.sqrt(xp.where(w > level, w, xp.zeros_like(w)))
    return V * xp.astype(root, V.dtype)[..., None, :]


def _cholesky(X: Array, xp: Any) -> tuple[Array, Array | None]:
    """Lower Cholesky factor of X and, when it can be read, whether it succeeded everywhere
    (None while traced: then a failed factorisation shows as NaN, the frameworks' convention)."""
    cholesky_ex = getattr(xp.linalg, "cholesky_ex", None)  # torch: no host sync, no raise
    if cholesky_ex is not None:
        L, info = cholesky_ex(X)
        return L, _a.concrete_bool(xp.all(info == 0))
    if _a.is_traced(X):
        return xp.linalg.cholesky(X), None
    try:
        L = xp.linalg.cholesky(X)
    except (ValueError, RuntimeError):  # numpy LinAlgError is a ValueError, torch's a RuntimeError
        return X, False
    return L, bool(xp.all(xp.isfinite(L)))  # JAX returns NaN instead of raising


def gramian_factor(X: Array, *, method: FactorMethod = "auto", xp: Any = None) -> Array:
    """A square-root factor L with ``X = L L^H`` of a Hermitian semidefinite X, (..., n, n).

    "cholesky": lower-triangular Cholesky factor (X must be positive definite; eager calls
    raise otherwise, traced ones give NaN). "eigh": ``V diag(sqrt(w))`` from the
    eigendecomposition, with eigenvalues below the rounding level of X set to zero; valid for
    singular X (uncontrollable or unobservable states). "auto": Cholesky, and eigh where it
    fails; while traced (``jax.jit``, ``jax.vmap``, ``torch.compile``), where the failure cannot
    be read on the host, "auto" is "eigh".
    """
    xp = _a.namespace(X, xp=xp)
    if method not in ("auto", "cholesky", "eigh"):
        msg = f"`method` {method!r} is unknown; choose 'auto', 'cholesky' or 'eigh'"
        raise ValueError(msg)
    if method == "eigh" or (method == "auto" and _a.is_traced(X)):
        return _eigh_factor(X, xp)
    L, succeeded = _cholesky(X, xp)
    if succeeded is not False:
        return L
    if method == "cholesky":
        msg = "the Gramian is not numerically positive definite; use method='eigh' (or 'auto')"
        raise ValueError(msg)
    return _eigh_factor(X, xp)


def gramian_factors(sys: System, *, method: FactorMethod = "auto") -> tuple[Array, Array]:
    """Factors ``(Lp, Lq)`` with ``P = Lp Lp^H`` and ``Q = Lq Lq^H``, each (..., n, n), of one dtype."""
    P, Q = common_dtype_gramians(sys)
    return gramian_factor(P, method=method), gramian_factor(Q, method=method)


def common_dtype_gramians(sys: System) -> tuple[Array, Array]:
    """``gramians(sys)`` cast to one dtype (P is complex for complex B, Q for complex C)."""
    xp = sys.xp
    P, Q = gramians(sys)
    dtype = xp.result_type(P.dtype, Q.dtype)
    return xp.astype(P, dtype, copy=False), xp.astype(Q, dtype, copy=False)
