"""Lyapunov equations by matmul-only (GPU-friendly) algorithms, batched over leading axes.

Discrete:    A X A^H - X + Q = 0     (X = sum_k A^k Q A^kH for |eig(A)| < 1)
Continuous:  A X + X A^H + Q = 0     (mapped to the discrete one by a Cayley transform)
"""

from __future__ import annotations

from typing import Any, Literal

from . import _array as _a

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
        _a.check_finite(name, value, xp)


def _check_iteration_options(tol: float | None, max_iterations: int) -> None:
    if tol is not None and not tol > 0:  # also rejects NaN
        msg = f"`tol` must be positive, got {tol}"
        raise ValueError(msg)
    _a.check_integer("max_iterations", max_iterations, 1, 1024)


def _with_structure_of(X: Array, Q: Array, xp: Any) -> Array:
    """X with the symmetry of the equation restored: the solution is Hermitian exactly when Q is
    (the map Q -> X commutes with ^H), so for a Hermitian Q (up to rounding) the skew-Hermitian
    part of X is rounding noise and is removed; for any other Q, X is returned as computed."""
    n = Q.shape[-1]
    skew = _a.frobenius_norm(Q - _a.mH(Q, xp), xp)
    hermitian_q = skew <= 10 * n * _a.eps(Q.dtype, xp) * _a.frobenius_norm(Q, xp)
    return xp.where(hermitian_q[..., None, None], (X + _a.mH(X, xp)) / 2, X)


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
    stopping rule bounds the relative error of X by ``tol`` (default: machine epsilon). Any Q
    (Hermitian or not): the iteration is linear in Q. While traced (``jax.jit``,
    ``torch.compile``) the convergence test cannot be read, and all ``max_iterations`` steps run.
    """
    tol = _a.eps(A.dtype, xp) if tol is None else tol
    traced = _a.is_traced(A) or _a.is_traced(Q)
    X = Q
    power = A
    size = float("nan")
    for _ in range(max_iterations):
        X = X + power @ X @ _a.mH(power, xp)
        power = power @ power
        if traced:
            continue
        size = float(xp.max(xp.sum(_a.abs2(power, xp), axis=(-2, -1))))
        if size <= tol:
            return _with_structure_of(X, Q, xp)
        if not size < 1e100:  # diverging (or NaN)
            break
    else:
        if traced:
            return _with_structure_of(X, Q, xp)
    msg = (
        "`A` is not stable: the doubling iteration did not converge "
        f"(||A^(2^k)||_F^2 = {size:.3g} after {max_iterations} squarings); "
        "its spectral radius is >= 1 or too close to 1"
    )
    raise ValueError(msg)


def _check_powers_vanish(A: Array, xp: Any, max_iterations: int) -> None:
    """Raise ValueError unless ``||A^(2^k)||_F^2`` falls below machine epsilon within
    ``max_iterations`` squarings, i.e. unless A is stable: the convergence test of the doubling
    iteration, for the Kronecker method, whose linear system is solvable for most unstable A too
    (and then gives a solution of the equation that is no Gramian). Skipped while traced."""
    if _a.is_traced(A):
        return
    tol = _a.eps(A.dtype, xp)
    power = A
    size = float("nan")
    for _ in range(max_iterations):
        power = power @ power
        size = float(xp.max(xp.sum(_a.abs2(power, xp), axis=(-2, -1))))
        if size <= tol:
            return
        if not size < 1e100:  # diverging (or NaN)
            break
    msg = (
        f"`A` is not stable: ||A^(2^k)||_F^2 = {size:.3g} does not vanish; "
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
    return _with_structure_of(xp.reshape(vec_x, (*batch, n, n)), Q, xp)


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
    Q : (..., n, n) array; Hermitian for Gramians (then X is Hermitian), but any Q is solved.
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
    _check_iteration_options(tol, max_iterations)
    dtype = _common_dtype(A, Q, xp)
    A, Q = xp.astype(A, dtype), xp.astype(Q, dtype)
    if method == "auto":
        method = "kronecker" if A.shape[-1] <= KRONECKER_MAX_ORDER else "doubling"
    if method == "diagonal":
        poles = _a.diagonal(A, xp)
        off_diagonal = A - _a.diag_embed(poles, xp)
        if _a.concrete_bool(xp.any(off_diagonal != 0)):
            msg = '`A` has non-zero off-diagonal entries; method="diagonal" needs a diagonal A'
            raise ValueError(msg)
        largest = xp.max(xp.abs(poles))
        if _a.concrete_bool(largest < 1) is False:
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
    _check_iteration_options(tol, max_iterations)
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
    try:  # sI - A is singular when s is an eigenvalue of A, which is then not Hurwitz
        resolvent = xp.linalg.inv(s * identity - A)
        A_discrete = (s * identity + A) @ resolvent
        Q_discrete = 2 * s * (resolvent @ Q @ _a.mH(resolvent, xp))
        return _doubling(A_discrete, Q_discrete, xp, tol, max_iterations)
    except (ValueError, RuntimeError):  # NumPy's LinAlgError is a ValueError, torch's a RuntimeError
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
