"""The rank decision without the full HSV spectrum, for energy = sum of squared HSVs.

The squared HSVs are the eigenvalues of the Hermitian ``H = P^1/2 Q P^1/2`` (those of ``Q P``)
and their total is ``trace(P Q)``, O(n^2) from the Gramians. A block Krylov space
``W = [V, (QP) V, (QP)^2 V, ...]`` with a Rayleigh-Ritz step on the pencil
``((PW)^H Q (PW), W^H P W)`` gives Ritz values ``theta_1 >= ... >= theta_k``; they are the
eigenvalues of H compressed to the subspace ``P^1/2 W``. Two bounds follow for the partial sums
``S_j = sigma_1^2 + ... + sigma_j^2``:

- lower: ``theta_1 + ... + theta_j <= S_j`` (Cauchy interlacing / Ky Fan);
- upper: ``S_j <= theta_1 + ... + theta_j + (trace(PQ) - theta_1 - ... - theta_k)`` (Ky Fan for
  the sum of the compressed part and the positive semidefinite rest).

The rank read from the lower bounds is never smaller than the true rank; when the upper bound
of ``S_(r-1)`` stays below the threshold it is the true rank, certified. Each block costs two
products with n x n matrices of a block of columns, O(n^2 b), instead of the O(n^3)
factorisations and eigenvalue problem of the full spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import _array as _a
from .balancing import _check_tau, hankel_singular_values, rank_for_energy
from .gramians import common_dtype_gramians
from .systems import System

Array = Any

#: the Krylov space grows at most to this fraction of n before the full spectrum is cheaper
MAX_FRACTION = 0.3
#: the space needed to settle a rank is about this many times the rank
SETTLING = 2.5
#: the rank is settled when the last block moved S_(r-1) by less than 1/SETTLED of its distance
#: to the threshold (and did not change the rank)
SETTLED = 8.0


@dataclass(frozen=True)
class EnergyRank:
    """rank: (...) integers; leading_hsv: (..., k) lower bounds of the leading HSVs
    (descending); total_energy: (...) ``sum sigma_i^2``; certified: whether ``rank`` is proved
    to equal the rank of the full spectrum (it is never smaller in any case); dimension: the
    size of the subspace used (n when the full spectrum was computed)."""

    rank: Array
    leading_hsv: Array
    total_energy: Array
    certified: bool
    dimension: int


def _start_block(n: int, k: int, dtype: Any, like: Array, xp: Any) -> Array:
    """A fixed, well-spread n x k start basis (deterministic; no random generator needed)."""
    rows = xp.astype(xp.arange(1, n + 1, device=_a.device_of(like)), xp.float64)[:, None]
    cols = xp.astype(xp.arange(1, k + 1, device=_a.device_of(like)), xp.float64)[None, :]
    golden = (math.sqrt(5) - 1) / 2
    block = xp.cos(2 * math.pi * (golden * rows * cols + rows / (cols + golden)))
    return xp.astype(block, dtype)


def _ritz_values(H: Array, G: Array, xp: Any) -> Array:
    """Eigenvalues (descending, clipped at 0) of the Hermitian-definite pencil (H, G)."""
    L = xp.linalg.cholesky((G + _a.mH(G, xp)) / 2)
    Linv = xp.linalg.inv(L)
    K = Linv @ H @ _a.mH(Linv, xp)
    values = xp.linalg.eigvalsh((K + _a.mH(K, xp)) / 2)
    return xp.flip(xp.clip(values, min=0.0), axis=-1)


def _orthonormal_complement(Y: Array, W: Array | None, xp: Any) -> Array:
    """An orthonormal basis of Y with the span of the orthonormal W removed (twice, for rounding)."""
    if W is not None:
        for _ in range(2):
            Y = Y - W @ (_a.mH(W, xp) @ Y)
    return xp.linalg.qr(Y)[0]


def _grow(M: Array, side: Array, corner: Array, xp: Any) -> Array:
    """[[M, side], [side^H, corner]]."""
    top = xp.concat([M, side], axis=-1)
    bottom = xp.concat([_a.mH(side, xp), corner], axis=-1)
    return xp.concat([top, bottom], axis=-2)


def _ranks(partial: Array, threshold: Array, xp: Any) -> Array:
    """Smallest j (1-based) with partial[..., j-1] >= threshold, k + 1 where there is none."""
    short = xp.astype(partial < threshold[..., None], xp.int64)
    return xp.sum(short, axis=-1) + 1


def _expected_rank(
    lower: Array, threshold: Array, previous_top: Array | None, b: int, xp: Any
) -> Array:
    """The rank where it is reached, else k plus the columns that the missing energy would
    need at the rate the last block gained (gains shrink, so this underestimates)."""
    k = lower.shape[-1]
    reached = xp.astype(_ranks(lower, threshold, xp), lower.dtype)
    if previous_top is None:
        return reached
    missing = xp.clip(threshold - lower[..., -1], min=0.0)
    gain = lower[..., -1] - previous_top
    blocks = missing / xp.where(gain > 0, gain, xp.full_like(gain, float("inf")))
    return xp.where(reached <= k, reached, k + b * blocks)


def hankel_rank(sys: System, tau: float, *, block: int = 16, horizon: int | None = None) -> EnergyRank:
    """Smallest r whose leading HSVs keep ``1 - tau`` of ``sum sigma_i^2``, without the full spectrum.

    The same decision as ``rank_for_energy(hankel_singular_values(sys), tau, energy="squared")``
    from a block Krylov space grown by ``block`` columns at a time (see the module docstring).
    It stops when the rank is certified equal to the full spectrum's (``certified=True``), or
    when a block left the rank unchanged and moved ``S_(r-1)`` by less than 1/8 of its distance
    to the threshold (settled; never smaller than the true rank). It computes the full spectrum
    instead for small n, when the rank would need more than 30% of n to settle, or when the
    projected problem becomes singular. Eager only (the stopping rule reads values).
    ``horizon``: the Gramians of ``gramians(sys, horizon=horizon)`` (L steps; None: infinite).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from compressm_core import DiagonalStateSpace
    >>> poles = xp.asarray([0.9, 0.5, 0.1])
    >>> int(hankel_rank(DiagonalStateSpace(poles, xp.ones((3, 1)), xp.ones((1, 3))), 0.1).rank)
    1
    """
    _check_tau(tau)
    block = _a.check_integer("block", block, 1, 1 << 20)
    xp = sys.xp
    n = sys.n
    P, Q = common_dtype_gramians(sys, horizon=horizon)
    total = xp.sum(P * xp.matrix_transpose(Q), axis=(-2, -1))
    total = xp.real(total) if _a.is_complex(total, xp) else total
    threshold = (1 - tau) * total
    b = min(block, n)
    limit = int(MAX_FRACTION * n)
    W = G = H = PW = previous = previous_top = None
    Y = xp.broadcast_to(_start_block(n, b, P.dtype, P, xp), (*P.shape[:-1], b))
    if int(limit / SETTLING) < 2 * b:  # small n: the full spectrum is cheaper than any subspace
        limit = 0
    while limit and (W is None or W.shape[-1] + b <= limit):
        Y = _orthonormal_complement(Y, W, xp)
        PY = P @ Y
        QPY = Q @ PY
        if W is None:
            W, PW = Y, PY
            G, H = _a.mH(Y, xp) @ PY, _a.mH(PY, xp) @ QPY
        else:
            G = _grow(G, _a.mH(W, xp) @ PY, _a.mH(Y, xp) @ PY, xp)
            H = _grow(H, _a.mH(PW, xp) @ QPY, _a.mH(PY, xp) @ QPY, xp)
            W, PW = xp.concat([W, Y], axis=-1), xp.concat([PW, PY], axis=-1)
        try:
            ritz = _ritz_values(H, G, xp)
        except (ValueError, RuntimeError):  # singular projected P (rank-deficient Gramian)
            break
        if not bool(xp.all(xp.isfinite(ritz))):  # JAX: NaN instead of an error
            break
        lower = xp.cumulative_sum(ritz, axis=-1)
        rank = _ranks(lower, threshold, xp)
        k = lower.shape[-1]
        below = xp.concat([xp.zeros_like(lower[..., :1]), lower], axis=-1)  # S_0 = 0, S_1, ...
        before = xp.take_along_axis(below, xp.clip(rank - 1, max=k)[..., None], axis=-1)[..., 0]
        uncaptured = xp.clip(total - lower[..., -1], min=0.0)
        room = bool(xp.all(rank + b <= k))
        if room and bool(xp.all(before + uncaptured < threshold)):
            return EnergyRank(rank, xp.sqrt(ritz), total, certified=True, dimension=k)
        if room and previous is not None and bool(xp.all(rank == previous[0])):
            growth = before - previous[1]  # how much the block moved the partial sum S_(r-1)
            if bool(xp.all(SETTLED * growth < threshold - before)):
                return EnergyRank(rank, xp.sqrt(ritz), total, certified=False, dimension=k)
        if bool(xp.any(_expected_rank(lower, threshold, previous_top, b, xp) > limit / SETTLING)):
            break  # it would not settle within the limit: the full spectrum is cheaper
        previous, previous_top = (rank, before), lower[..., -1]
        Y = QPY  # the next Krylov block
    hsv = hankel_singular_values(sys, horizon=horizon)
    rank = rank_for_energy(hsv, tau, energy="squared")
    return EnergyRank(rank, hsv, total, certified=True, dimension=n)
