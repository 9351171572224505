"""The rank decision without the full HSV spectrum, for energy = sum of squared HSVs.

The total energy is ``sum sigma_i^2 = trace(P Q)``, O(n^2) from the Gramians. The leading
``sigma_i^2`` are the eigenvalues of the Hermitian-definite pencil ``(P Q P, P)`` (equivalently
of ``Q P``); a few steps of subspace iteration ``W <- orth(Q P W)`` with a block of k << n
columns and a Rayleigh-Ritz step give Ritz values ``theta_1 >= ... >= theta_k``. By Cauchy's
interlacing theorem ``theta_i <= sigma_i^2``, so every partial sum of Ritz values is a lower
bound of the true one: the rank found from them is never smaller than the true rank (it
never keeps less energy than asked for), and equals it once the subspace has converged.
Cost: O(n^2 k) matmuls per step instead of the O(n^3) factorisations and SVD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import _array as _a
from .balancing import _check_tau, hankel_singular_values, rank_for_energy
from .gramians import gramians
from .systems import System

Array = Any


@dataclass(frozen=True)
class EnergyRank:
    """rank: (...) integers; leading_hsv: (..., k) lower bounds of the leading HSVs
    (descending); total_energy: (...) ``sum sigma_i^2``."""

    rank: Array
    leading_hsv: Array
    total_energy: Array


def _start_block(n: int, k: int, dtype: Any, like: Array, xp: Any) -> Array:
    """A fixed, well-spread n x k start basis (deterministic; no random generator needed)."""
    rows = xp.astype(xp.arange(1, n + 1, device=_a.device_of(like)), xp.float64)[:, None]
    cols = xp.astype(xp.arange(1, k + 1, device=_a.device_of(like)), xp.float64)[None, :]
    golden = (math.sqrt(5) - 1) / 2
    block = xp.cos(2 * math.pi * (golden * rows * cols + rows / (cols + golden)))
    return xp.astype(block, dtype)


def _ritz_values(P: Array, Q: Array, W: Array, xp: Any) -> Array:
    """Eigenvalues (descending) of the projected pencil ((PW)^H Q (PW), W^H P W)."""
    PW = P @ W
    projected_Q = _a.mH(PW, xp) @ Q @ PW
    projected_P = _a.mH(W, xp) @ PW
    L = xp.linalg.cholesky((projected_P + _a.mH(projected_P, xp)) / 2)
    Linv = xp.linalg.inv(L)
    H = Linv @ projected_Q @ _a.mH(Linv, xp)
    values = xp.linalg.eigvalsh((H + _a.mH(H, xp)) / 2)
    return xp.flip(xp.clip(values, min=0.0), axis=-1)


def hankel_rank(sys: System, tau: float, *, block: int = 32, iterations: int = 3) -> EnergyRank:
    """Smallest r whose leading HSVs keep ``1 - tau`` of ``sum sigma_i^2``, without the full spectrum.

    The same decision as ``rank_for_energy(hankel_singular_values(sys), tau, energy="squared")``
    but from O(n^2 k) work: subspace iteration with ``block`` columns (doubled until the
    rank fits with room to spare; the converged columns are kept), ``iterations`` steps per
    block. The returned rank is certified not to be too small (see the module docstring).
    Falls back to the full spectrum when the block would exceed n / 4, where the full
    spectrum is cheaper.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from compressm_core import DiagonalStateSpace
    >>> poles = xp.asarray([0.9, 0.5, 0.1])
    >>> int(hankel_rank(DiagonalStateSpace(poles, xp.ones((3, 1)), xp.ones((1, 3))), 0.1).rank)
    1
    """
    _check_tau(tau)
    xp = sys.xp
    n = sys.n
    P, Q = gramians(sys)
    total = xp.sum(P * xp.matrix_transpose(Q), axis=(-2, -1))
    total = xp.real(total) if _a.is_complex(total, xp) else total
    k = min(max(1, block), n)
    W = _start_block(n, k, P.dtype, P, xp)
    while 4 * k <= n:
        for _ in range(iterations):
            W, _ = xp.linalg.qr(Q @ (P @ W))
        try:
            ritz = _ritz_values(P, Q, W, xp)
        except (ValueError, RuntimeError):  # singular projected P (rank-deficient Gramian)
            break
        kept = xp.cumulative_sum(ritz, axis=-1)
        reached = kept >= (1 - tau) * total[..., None]
        rank = xp.sum(xp.astype(xp.logical_not(reached), xp.int64), axis=-1) + 1
        if bool(xp.all(rank < k)):
            return EnergyRank(rank, xp.sqrt(ritz), total)
        extra = _start_block(n, 2 * k, P.dtype, P, xp)[:, k:]
        W = xp.concat([W, xp.broadcast_to(extra, (*W.shape[:-1], k))], axis=-1)
        k *= 2
    hsv = hankel_singular_values(sys)
    return EnergyRank(rank_for_energy(hsv, tau, energy="squared"), hsv, total)
