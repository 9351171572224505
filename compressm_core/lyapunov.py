"""Lyapunov equations by matmul-only (GPU-friendly) algorithms, batched over leading axes.

Discrete:    A X A^H - X + Q = 0     (X = sum_k A^k Q A^kH for |eig(A)| < 1)
Continuous:  A X + X A^H + Q = 0     (mapped to the discrete one by a Cayley transform)
"""

from __future__ import annotations

from typing import Any, Literal

from . import _array as _a
from .systems import _concrete_bool

Array = Any

DiscreteMethod = Literal["auto", "diagonal", "doubling", "kronecker"]

#: ``method="auto"`` solves systems up to this order by the direct Kronecker method.
KRONECKER_MAX_ORDER = 8


def _check_pair(A: Array, Q: Array, xp: Any) -> None:
    _a.check_square("A", A)
    _a.check_square("Q", Q)
    if A.shape[-1] != Q.shape[-1]:
        msg = f"`A` is {A.shape[-1]}x{A.shape[-1]} but `Q` is {Q.shape[-1]}x{Q.shape[-1]}"
        raise ValueError(msg)
    _a.batch_shape(A.shape[:-2], Q.shape[:-2])
    for name, value in (("A", A), ("Q", Q)):
        _a.check_floating(name, value, xp)
        if _concrete_bool(xp.all(xp.isfinite(value))) is False:
            _a.check_finite(name, value, xp)


def _common_dtype(A: Array, Q: Array, xp: Any) -> Any:
    return xp.result_type(A.dtype, Q.dtype)


def diagonal_lyapunov(poles: Array, Q: Array, xp: Any) -> Array:
    """Closed form for A = diag(poles): X_ij = Q_ij / (1 - poles_i conj(poles_j)).

    poles (..., n), Q (..., n, n) -> X (..., n, n); O(n^2) work, no n^2 x n^2 system.
    """
    denominator = 1 - poles[..., :, None] * _a.conj(poles, xp)[..., None, :]
    return Q / denominator


def _doubling(A: Array, Q: Array, xp: Any, tol: float | None, max_iterations: int) -> Array:
    """Squared Smith iteration: X <- X + A_k X A_k^H, A_k <- A_k^2, until ||A_k||_F^2 <= tol.

    After k steps X = sum_{j < 2^k} A^j Q A^jH and the remainder is A_k X A_k^H, so the
    stopping rule bounds the relative error of X by ``tol`` (default: machine epsilon).
    """
    tol = _a.eps(A.dtype, xp) if tol is None else tol
    X = Q
    power = A
    for _ in range(max_iterations):
        X = X + power @ X @ _a.mH(power, xp)
        power = power @ power
        size = xp.max(xp.sum(_a.abs2(power, xp), axis=(-2, -1)))
        converged = _concrete_bool(size <= tol)
        if converged:
            return (X + _a.mH(X, xp)) / 2
        if converged is False and not float(size) < 1e100:  # diverging (or NaN)
            break
    else:
        if converged is None:  # traced under jax.jit: the fixed number of steps was run
            return (X + _a.mH(X, xp)) / 2
    msg = (
        "`A` is not stable: the doubling iteration did not converge "
        f"(||A^(2^k)||_F^2 = {float(size):.3g} after {max_iterations} squarings); "
        "its spectral radius is >= 1 or too close to 1"
    )
    raise ValueError(msg)


def _check_powers_vanish(A: Array, xp: Any, max_iterations: int) -> None:
    """Raise ValueError unless ``||A^(2^k)||_F^2`` falls below machine epsilon within
    ``max_iterations`` squarings, i.e. unless A is stable: the convergence test of the doubling
    iteration, for the Kronecker method, whose linear system is solvable for most unstable A too
    (and then gives a solution of the equation that is no Gramian)."""
    tol = _a.eps(A.dtype, xp)
    power = A
    for _ in range(max_iterations):
        power = power @ power
        size = xp.max(xp.sum(_a.abs2(power, xp), axis=(-2, -1)))
        vanished = _concrete_bool(size <= tol)
        if vanished is not False:  # True, or None when traced under jax.jit: nothing to check
            return
        if not float(size) < 1e100:  # diverging (or NaN)
            break
    msg = (
        f"`A` is not stable: ||A^(2^k)||_F^2 = {float(size):.3g} does not vanish; "
        "its spectral radius is >= 1 or too close to 1"
    )
    raise ValueError(msg)


def _kronecker(A: Array, Q: Array, xp: Any) -> Array:
    """Direct solve of (I - A (x) conj(A)) vec(X) = vec(Q) (row-major vec); O(n^6), small n only."""
    n = A.shape[-1]
    batch = _a.batch_shape(A.shape[:-2], Q.shape[:-2])
    A = xp.broadcast_to(A, (*batch, n, n))
    Q = xp.broadcast_to(Q, (*batch, n, n))
    # K[(i, j), (k, l)] = A[i, k] conj(A[j, l])  so that  (K vec X)_(i, j) = (A X A^H)_ij
    kron = A[..., :, None, :, None] * _a.conj(A, xp)[..., None, :, None, :]
    kron = xp.reshape(kron, (*batch, n * n, n * n))
    system = _a.eye(n * n, kron.dtype, kron, xp) - kron
    vec_x = xp.linalg.solve(system, xp.reshape(Q, (*batch, n * n, 1)))
    X = xp.reshape(vec_x, (*batch, n, n))
    return (X + _a.mH(X, xp)) / 2


def solve_discrete_lyapunov(
    A: Array,
    Q: Array,
    *,
    method: DiscreteMethod = "auto",
    tol: float | None = None,
    max_iterations: int = 64,
    xp: Any = None,
) -> Array:
    """Solve ``A X A^H - X + Q = 0`` for X, batched.

    Parameters
    ----------
    A : (..., n, n) array, stable (all |eigenvalues| < 1).
    Q : (..., n, n) Hermitian array.
    method : "diagonal" (A must be diagonal; closed form), "doubling" (squared Smith,
        matmul-only, relative error <= ``tol``), "kronecker" (direct n^2 x n^2 solve,
        small n) or "auto" (kronecker for n <= 8, doubling otherwise).

    Returns
    -------
    X : (..., n, n) Hermitian array in the namespace (and on the device) of the inputs.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> X = solve_discrete_lyapunov(xp.asarray([[0.5]]), xp.asarray([[3.0]]))
    >>> float(X[0, 0])  # 3 / (1 - 0.25)
    4.0
    """
    xp = _a.namespace(A, Q, xp=xp)
    _check_pair(A, Q, xp)
    dtype = _common_dtype(A, Q, xp)
    A, Q = xp.astype(A, dtype), xp.astype(Q, dtype)
    if method == "auto":
        method = "kronecker" if A.shape[-1] <= KRONECKER_MAX_ORDER else "doubling"
    if method == "diagonal":
        poles = _a.diagonal(A, xp)
        off_diagonal = A - _a.diag_embed(poles, xp)
        if _concrete_bool(xp.any(off_diagonal != 0)):
            msg = '`A` has non-zero off-diagonal entries; method="diagonal" needs a diagonal A'
            raise ValueError(msg)
        largest = xp.max(xp.abs(poles))
        if _concrete_bool(largest < 1) is False:
            msg = f"`A` is not stable: a diagonal entry has modulus {float(largest):.6g} >= 1"
            raise ValueError(msg)
        return diagonal_lyapunov(poles, Q, xp)
    if method == "doubling":
        return _doubling(A, Q, xp, tol, max_iterations)
    if method == "kronecker":
        _check_powers_vanish(A, xp, max_iterations)
        return _kronecker(A, Q, xp)
    msg = f"`method` {method!r} is unknown; choose 'auto', 'diagonal', 'doubling' or 'kronecker'"
    raise ValueError(msg)


def solve_continuous_lyapunov(
    A: Array,
    Q: Array,
    *,
    shift: float | None = None,
    tol: float | None = None,
    max_iterations: int = 64,
    xp: Any = None,
) -> Array:
    """Solve ``A X + X A^H + Q = 0`` for X, batched, with A Hurwitz (Re eig(A) < 0).

    Cayley transform with shift s > 0: ``Ad = (sI + A)(sI - A)^-1`` and
    ``Qd = 2s (sI - A)^-1 Q (sI - A)^-H`` give the discrete equation
    ``Ad X Ad^H - X + Qd = 0`` with the same X, solved by doubling. The default
    shift is ``||A||_F / sqrt(n)`` per batch element.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> X = solve_continuous_lyapunov(xp.asarray([[-2.0]]), xp.asarray([[8.0]]))
    >>> round(float(X[0, 0]), 12)  # 8 / (2 * 2)
    2.0
    """
    xp = _a.namespace(A, Q, xp=xp)
    _check_pair(A, Q, xp)
    dtype = _common_dtype(A, Q, xp)
    A, Q = xp.astype(A, dtype), xp.astype(Q, dtype)
    n = A.shape[-1]
    identity = _a.eye(n, dtype, A, xp)
    if shift is None:
        s = _a.frobenius_norm(A, xp)[..., None, None] / n**0.5
        s = xp.where(s > 0, s, xp.ones_like(s))
    else:
        if not shift > 0:
            msg = f"`shift` must be positive, got {shift}"
            raise ValueError(msg)
        s = shift
    resolvent = xp.linalg.inv(s * identity - A)
    A_discrete = (s * identity + A) @ resolvent
    Q_discrete = 2 * s * (resolvent @ Q @ _a.mH(resolvent, xp))
    try:
        return _doubling(A_discrete, Q_discrete, xp, tol, max_iterations)
    except ValueError:
        msg = "`A` is not Hurwitz: an eigenvalue has a non-negative real part (or is too close to 0)"
        raise ValueError(msg) from None


def lyapunov_residual(A: Array, X: Array, Q: Array, *, discrete: bool = True, xp: Any = None) -> Array:
    """Relative residual ``||A X A^H - X + Q||_F / ||Q||_F`` (or ``||A X + X A^H + Q||_F / ||Q||_F``).

    Shapes: A, X, Q (..., n, n) -> (...).
    """
    xp = _a.namespace(A, X, Q, xp=xp)
    dtype = _a.result_dtype(xp, A, X, Q)
    A, X, Q = xp.astype(A, dtype), xp.astype(X, dtype), xp.astype(Q, dtype)
    if discrete:
        residual = A @ X @ _a.mH(A, xp) - X + Q
    else:
        residual = A @ X + X @ _a.mH(A, xp) + Q
    return _a.frobenius_norm(residual, xp) / _a.frobenius_norm(Q, xp)
