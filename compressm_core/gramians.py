"""Controllability and observability Gramians and their square-root factors, batched.

Infinite horizon (``horizon=None``), for stable systems:

    Controllability:  A P A^H - P + B B^H = 0
    Observability:    A^H Q A - Q + C^H C = 0

Finite horizon L (``horizon=L``, time-limited Gramians, Gawronski & Juang 1990), the energy of
L steps, for any A:

    P_L = sum_{k=0}^{L-1} A^k B B^H (A^H)^k
    Q_L = sum_{k=0}^{L-1} (A^H)^k C^H C A^k

Diagonal systems use the closed (Cauchy-like) forms, O(n^2 (m + p)); dense systems the
matmul-only doubling solver (infinite) or doubling over the binary digits of L (finite).
"""

from __future__ import annotations

import math
import operator
from typing import Any, Literal

from . import _array as _a
from .lyapunov import solve_discrete_lyapunov
from .systems import DiagonalStateSpace, System, check_stable

Array = Any
FactorMethod = Literal["auto", "cholesky", "eigh"]


def check_horizon(horizon: Any) -> int | None:
    """``horizon`` as a positive int (any integer type, not bool), or None; ValueError otherwise."""
    if horizon is None:
        return None
    try:
        steps = None if isinstance(horizon, bool) else operator.index(horizon)
    except TypeError:
        steps = None
    if steps is None or steps < 1:
        msg = f"`horizon` must be a positive integer (a number of time steps) or None (infinite), got {horizon!r}"
        raise ValueError(msg)
    return steps


def _exp_minus_one(a: Array, b: Array, like: Array, xp: Any) -> Array:
    """``exp(a + i b) - 1`` from real functions, accurate where it is small: with
    ``s, c = sin(b/2), cos(b/2)`` and ``m = expm1(a)`` it is ``m - 2 s^2 (1 + m) + 2 i (1 + m) s c``
    (the real part only for a real ``like``)."""
    half_sine, half_cosine, m = xp.sin(b / 2), xp.cos(b / 2), xp.expm1(a)
    real = m - 2 * half_sine * half_sine * (1 + m)
    if not _a.is_complex(like, xp):
        return real
    imaginary = 2 * (1 + m) * half_sine * half_cosine
    return xp.astype(real, like.dtype) + xp.astype(imaginary, like.dtype) * 1j


def geometric_sums(poles: Array, horizon: int, xp: Any) -> Array:
    """``G_ij = sum_{k=0}^{L-1} z_ij^k = (1 - z_ij^L) / (1 - z_ij)`` with ``z_ij = p_i conj(p_j)``,
    (..., n, n) from ``poles`` (..., n), ``L = horizon``, in the dtype of the poles.

    Evaluated as ``expm1(L u) / expm1(u)`` with ``u = log z``: numerator and denominator share
    the rounding of u, so the quotient keeps its digits near z = 1, where ``1 - z^L`` and
    ``1 - z`` both cancel (poles of modulus 1 - 1e-9: ~8 digits lost otherwise).
    ``u_ij = log|p_i| + log|p_j| + i (arg p_i - arg p_j)`` takes logarithms of the n poles only,
    and ``expm1`` of it is taken from real functions, which every array namespace has (complex
    ``expm1`` is not universal). z = 0 gives 1, z = 1 gives L.
    """
    modulus = xp.abs(poles)
    nonzero = modulus > 0
    log_modulus = xp.where(
        nonzero, xp.log(xp.where(nonzero, modulus, xp.ones_like(modulus))), xp.full_like(modulus, -math.inf)
    )
    if _a.is_complex(poles, xp):
        angle = xp.atan2(xp.imag(poles), xp.real(poles))
    else:
        angle = xp.where(poles < 0, xp.full_like(poles, math.pi), xp.zeros_like(poles))
    a = log_modulus[..., :, None] + log_modulus[..., None, :]
    b = angle[..., :, None] - angle[..., None, :]
    one = (a == 0) & (b == 0)
    denominator = _exp_minus_one(a, b, poles, xp)
    sums = _exp_minus_one(horizon * a, horizon * b, poles, xp) / xp.where(one, xp.ones_like(denominator), denominator)
    return xp.where(one, xp.full_like(sums, horizon), sums)


def finite_horizon_sum(A: Array, Q: Array, horizon: int, xp: Any) -> Array:
    """``S_L = sum_{k=0}^{L-1} A^k Q (A^k)^H`` for a Hermitian Q, (..., n, n), ``L = horizon``.

    Doubling over the binary digits of L: ``S_2m = S_m + A^m S_m (A^m)^H`` and
    ``S_(m+1) = Q + A S_m A^H``, O(log L) matmuls, every term added is semidefinite (no
    ``P - A^L P (A^L)^H``, which cancels for slow poles). Any A (no stability needed).
    """
    dtype = xp.result_type(A.dtype, Q.dtype)
    A, Q = xp.astype(A, dtype, copy=False), xp.astype(Q, dtype, copy=False)
    S, power = Q, A
    digits = bin(horizon)[3:]  # after the leading 1 (S_1 = Q, power = A^1)
    for position, digit in enumerate(digits):
        S = S + power @ S @ _a.mH(power, xp)
        if digit == "1":
            S = Q + A @ S @ _a.mH(A, xp)
        if position + 1 < len(digits):
            power = power @ power
            if digit == "1":
                power = A @ power
    return (S + _a.mH(S, xp)) / 2


def _diagonal_weights(sys: DiagonalStateSpace, horizon: int | None, *Xs: Array) -> Array:
    """K (..., n, n) with ``P = (B B^H) * K`` and ``Q = (C^H C) * conj(K)`` (elementwise) for
    A = diag(p): ``K_ij = sum_{k<L} (p_i conj(p_j))^k``, ``1 / (1 - p_i conj(p_j))`` for
    ``horizon=None``; real for real poles, in the precision of the poles and of ``Xs``."""
    xp = sys.xp
    precision = [_a.real_dtype(X.dtype, xp) for X in Xs]
    poles = xp.astype(sys.poles, xp.result_type(sys.poles, *precision), copy=False)
    if horizon is None:
        # = 1 / (1 - z); NumPy at n = 1024: 8 ms less (its scalar-first ``1 - z`` of a fresh
        # temporary is slow)
        return -1 / (poles[..., :, None] * _a.conj(poles, xp)[..., None, :] - 1)
    return geometric_sums(poles, horizon, xp)


def _checked_horizon(sys: System, horizon: int | None) -> int | None:
    """``horizon`` checked; an infinite one (None) needs a stable ``sys``."""
    horizon = check_horizon(horizon)
    if horizon is None:
        check_stable(sys)
    return horizon


def _diagonal_gramian(sys: DiagonalStateSpace, X0: Array, weights: Array, *, adjoint: bool) -> Array:
    """``X0 * K`` (controllability) or ``X0 * conj(K)`` (``adjoint``, observability) for the
    weights K of ``_diagonal_weights``, in the dtype of its closed form (that of X0 and the poles)."""
    xp = sys.xp
    X = X0 * (_a.conj(weights, xp) if adjoint else weights)
    return xp.astype(X, xp.result_type(X0, sys.poles), copy=False)


def _gramian(sys: System, X0: Array, horizon: int | None, *, adjoint: bool) -> Array:
    """``sum_k M^k X0 (M^k)^H`` over ``horizon`` steps or infinitely many (a Lyapunov equation),
    with M = A (controllability) or M = A^H (``adjoint``, observability)."""
    horizon = _checked_horizon(sys, horizon)
    if isinstance(sys, DiagonalStateSpace):
        return _diagonal_gramian(sys, X0, _diagonal_weights(sys, horizon, X0), adjoint=adjoint)
    xp = sys.xp
    A = _a.mH(sys.A, xp) if adjoint else sys.A
    if horizon is None:
        return solve_discrete_lyapunov(A, X0, xp=xp)
    return finite_horizon_sum(A, X0, horizon, xp)


def controllability_gramian(sys: System, *, horizon: int | None = None) -> Array:
    """P, shape (..., n, n): ``A P A^H - P + B B^H = 0`` (``horizon=None``, stable systems), or
    ``P_L = sum_{k<L} A^k B B^H (A^H)^k`` over ``horizon=L`` steps (any system)."""
    return _gramian(sys, sys.B @ _a.mH(sys.B, sys.xp), horizon, adjoint=False)


def observability_gramian(sys: System, *, horizon: int | None = None) -> Array:
    """Q, shape (..., n, n): ``A^H Q A - Q + C^H C = 0`` (``horizon=None``, stable systems), or
    ``Q_L = sum_{k<L} (A^H)^k C^H C A^k`` over ``horizon=L`` steps (any system)."""
    return _gramian(sys, _a.mH(sys.C, sys.xp) @ sys.C, horizon, adjoint=True)


def gramians(sys: System, *, horizon: int | None = None) -> tuple[Array, Array]:
    """The controllability and observability Gramians ``(P, Q)``, each (..., n, n).

    ``horizon=None``: the infinite-horizon Gramians (Lyapunov equations, stable systems only).
    ``horizon=L``: the time-limited ones, sums over the first L steps (Gawronski & Juang 1990,
    "Model reduction in limited time and frequency intervals"): the energy a model that only
    ever runs sequences of length L can see; a pole at 0.999 weighs ~L there instead of
    1 / (1 - 0.999^2) = 500.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from compressm_core import DiagonalStateSpace
    >>> sys = DiagonalStateSpace(xp.asarray([0.5]), xp.asarray([[1.0]]), xp.asarray([[1.0]]))
    >>> P, Q = gramians(sys)
    >>> round(float(P[0, 0]), 12), round(float(Q[0, 0]), 12)  # 1 / (1 - 0.25)
    (1.333333333333, 1.333333333333)
    >>> P2, _ = gramians(sys, horizon=2)
    >>> float(P2[0, 0])  # 1 + 0.25
    1.25
    """
    if not isinstance(sys, DiagonalStateSpace):
        return controllability_gramian(sys, horizon=horizon), observability_gramian(sys, horizon=horizon)
    xp = sys.xp
    weights = _diagonal_weights(sys, _checked_horizon(sys, horizon), sys.B, sys.C)  # shared by P and Q
    P = _diagonal_gramian(sys, sys.B @ _a.mH(sys.B, xp), weights, adjoint=False)
    return P, _diagonal_gramian(sys, _a.mH(sys.C, xp) @ sys.C, weights, adjoint=True)


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


def gramian_factors(
    sys: System, *, method: FactorMethod = "auto", horizon: int | None = None
) -> tuple[Array, Array]:
    """Factors ``(Lp, Lq)`` with ``P = Lp Lp^H`` and ``Q = Lq Lq^H``, each (..., n, n), of one
    dtype; the Gramians of ``gramians(sys, horizon=horizon)``."""
    P, Q = common_dtype_gramians(sys, horizon=horizon)
    return gramian_factor(P, method=method), gramian_factor(Q, method=method)


def common_dtype_gramians(sys: System, *, horizon: int | None = None) -> tuple[Array, Array]:
    """``gramians(sys, horizon=horizon)`` cast to one dtype (P is complex for complex B, Q for complex C)."""
    xp = sys.xp
    P, Q = gramians(sys, horizon=horizon)
    dtype = xp.result_type(P.dtype, Q.dtype)
    return xp.astype(P, dtype, copy=False), xp.astype(Q, dtype, copy=False)
