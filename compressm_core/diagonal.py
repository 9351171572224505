"""Re-diagonalisation of reduced systems, and the real-output view of complex diagonal systems.

After balanced truncation ``A`` is dense; models that need ``A = diag(poles)`` (LRU, S5)
get it back from the eigendecomposition ``A = V diag(poles) V^-1``: ``B <- V^-1 B``,
``C <- C V``. The transfer function does not change.
"""

from __future__ import annotations

from typing import Any

from . import _array as _a
from .systems import DiagonalStateSpace, System

Array = Any


def _eig(A: Array, xp: Any) -> tuple[Array, Array]:
    """Eigenvalues and eigenvectors of (..., n, n) A, in the namespace and on the device of A.

    Uses the namespace's ``linalg.eig`` (array API 2025.12, PyTorch, JAX on CPU). Where it
    is missing or not implemented (JAX on GPU), the decomposition is done by NumPy on the
    host and the results are moved back to A's device: one round-trip per call.
    """
    eig = getattr(xp.linalg, "eig", None)
    if eig is not None:
        try:
            result = eig(A)
            return result[0], result[1]
        except NotImplementedError:
            pass
    import numpy as np

    poles, vectors = np.linalg.eig(_a.to_numpy(A))
    return _a.from_numpy(poles, A, xp), _a.from_numpy(vectors, A, xp)


def _modes_of_real_map(poles: Array, xp: Any) -> tuple[Array, Array]:
    """Indices of one pole per conjugate pair plus the real poles (equal counts per batch
    member), and whether each kept pole belongs to a pair."""
    scale = xp.maximum(xp.abs(poles), xp.ones_like(xp.abs(poles)))
    tol = _a.eps(poles.dtype, xp) ** 0.5 * scale
    lower = xp.imag(poles) < -tol
    upper = xp.imag(poles) > tol
    n_lower = xp.sum(xp.astype(lower, xp.int64), axis=-1)
    n_upper = xp.sum(xp.astype(upper, xp.int64), axis=-1)
    if not bool(xp.all(n_lower == n_upper)):
        msg = (
            "`system` does not have a real transfer function: its poles do not come in "
            "conjugate pairs, so real_output=True cannot merge them"
        )
        raise ValueError(msg)
    counts = poles.shape[-1] - n_lower
    if not bool(xp.all(counts == xp.reshape(counts, (-1,))[0])):
        msg = "the batch members have different numbers of conjugate pairs; reduce them one by one"
        raise ValueError(msg)
    kept = int(xp.reshape(counts, (-1,))[0])
    order = xp.argsort(xp.astype(lower, xp.int8), axis=-1, stable=True)[..., :kept]
    return order, xp.take_along_axis(upper, order, axis=-1)


def _inverse_of_eigenvectors(V: Array, max_condition: float | None, xp: Any) -> Array:
    """V^-1, after checking that ``||V||_F ||V^-1||_F`` (an upper estimate of the 2-norm condition
    number of the eigenvector basis, at most n times too large) stays within ``max_condition``
    (default 1/sqrt(eps)): for a defective or nearly defective A the modal form amplifies rounding
    errors by about that factor, and its transfer function is no longer the system's."""
    limit = _a.eps(V.dtype, xp) ** -0.5 if max_condition is None else max_condition
    try:
        Vinv = xp.linalg.inv(V)
    except (ValueError, RuntimeError):  # exactly singular V (NumPy's LinAlgError, torch's error)
        Vinv = xp.full_like(V, float("nan"))
    condition = xp.reshape(_a.frobenius_norm(V, xp) * _a.frobenius_norm(Vinv, xp), (-1,))
    condition = xp.where(xp.isfinite(condition), condition, xp.full_like(condition, float("inf")))
    if _a.concrete_bool(xp.all(condition <= limit)) is False:
        index = int(xp.argmax(condition))
        msg = (
            "`system` has a (nearly) defective A: its eigenvector basis has condition estimate "
            f"{float(condition[index]):.3g} > max_condition = {limit:.3g} (flat batch index {index}), "
            "so its modal (diagonal) form would not reproduce its transfer function; keep a "
            "different number of states, or keep the system dense"
        )
        raise ValueError(msg)
    return Vinv


def to_diagonal(
    system: System, *, real_output: bool = False, max_condition: float | None = None
) -> DiagonalStateSpace:
    """The modal form ``DiagonalStateSpace(poles, V^-1 B, C V, D)`` of ``system``, batched.

    A defective or nearly defective A (a Jordan block) has no well-conditioned eigenvector basis:
    where ``||V||_F ||V^-1||_F`` exceeds ``max_condition`` (default ``1/sqrt(eps)``, 6.7e7 in
    float64) a ValueError is raised instead of returning a modal form with a wrong transfer
    function. The check reads values on the host and is skipped while traced (``jax.jit``).

    ``real_output=True`` is for systems whose transfer function is real (the map
    ``u -> Re(...)`` the LRU reads): of each conjugate pole pair only the pole with
    positive imaginary part is kept and its column of C is doubled, so that
    ``Re(C_new x_new)`` reproduces the output for real inputs with about half the states.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from compressm_core import StateSpace
    >>> sys = StateSpace(xp.asarray([[0.5, 1.0], [0.0, 0.25]]), xp.ones((2, 1)), xp.ones((1, 2)))
    >>> sorted(float(xp.real(p)) for p in to_diagonal(sys).poles)
    [0.25, 0.5]
    """
    if isinstance(system, DiagonalStateSpace):
        system = system.to_dense()
    xp = system.xp
    poles, V = _eig(system.A, xp)
    dtype = _a.complex_dtype(system.dtype, xp)
    Vinv = _inverse_of_eigenvectors(V, max_condition, xp)
    B = Vinv @ xp.astype(system.B, dtype)
    C = xp.astype(system.C, dtype) @ V
    if real_output:
        if _a.is_traced(poles):
            msg = "real_output=True keeps a number of states that depends on the poles' values; call it eagerly"
            raise ValueError(msg)
        index, is_pair = _modes_of_real_map(poles, xp)
        poles = xp.take_along_axis(poles, index, axis=-1)
        B = xp.take_along_axis(B, xp.broadcast_to(index[..., :, None], (*index.shape, B.shape[-1])), axis=-2)
        C = xp.take_along_axis(C, xp.broadcast_to(index[..., None, :], (*C.shape[:-1], index.shape[-1])), axis=-1)
        doubling = 1 + xp.astype(is_pair, dtype)  # 2 for a pair, 1 for a real pole
        C = C * doubling[..., None, :]
    return DiagonalStateSpace(poles, B, C, system.D)


def real_output_system(dsys: DiagonalStateSpace) -> DiagonalStateSpace:
    """The complex diagonal system of order 2n whose output equals ``Re(C x) + D u`` of ``dsys``.

    With ``Re(C x) = (C x + conj(C) conj(x)) / 2`` and ``conj(x)`` driven by ``conj(B)`` for
    real inputs: poles ``[p, conj(p)]``, B ``[B; conj(B)]``, C ``[C/2, conj(C)/2]``. Its Gramians
    and Hankel singular values are those of the real 2n-state realisation of the LRU's map
    (both realisations are similar), in closed form.
    """
    xp = dsys.xp
    dtype = _a.complex_dtype(dsys.dtype, xp)
    poles = xp.astype(dsys.poles, dtype)
    B = xp.astype(dsys.B, dtype)
    C = xp.astype(dsys.C, dtype) / 2
    return DiagonalStateSpace(
        xp.concat([poles, xp.conj(poles)], axis=-1),
        xp.concat([B, xp.conj(B)], axis=-2),
        xp.concat([C, xp.conj(C)], axis=-1),
        dsys.D,
    )
