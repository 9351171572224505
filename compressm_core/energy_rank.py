"""The rank decision without the full HSV spectrum, for energy = sum of squared HSVs.

The squared HSVs are the eigenvalues of the Hermitian ``H = Lp^H Q Lp`` (``P = Lp Lp^H``;
those of ``Q P``), and their total is ``trace(P Q) = sum_ij P_ij conj(Q_ij)``, O(n^2) from the
Gramians. The rank needs only the partial sums ``S_j = sigma_1^2 + ... + sigma_j^2`` near the
threshold ``(1 - tau) trace(PQ)``. ``hankel_rank`` finds them in a block Krylov space
``W = [V, (QP) V, (QP)^2 V, ...]`` whose basis is orthonormal in the P inner product
(``W^H P W = I``; QP is self-adjoint there, so this is block Lanczos), so that the Ritz values
``theta_1 >= ... >= theta_k`` are the eigenvalues of the k x k matrix ``(PW)^H Q (PW)``, the
compression of H to ``Lp^H W``. Two bounds follow:

- lower: ``theta_1 + ... + theta_j <= S_j`` (Cauchy interlacing), so the rank read from the
  Ritz values is never smaller than the true rank;
- upper: ``S_j <= theta_1 + ... + theta_j + (trace(PQ) - theta_1 - ... - theta_k)`` (Ky Fan,
  for the compressed part plus the semidefinite rest); when it keeps ``S_(r-1)`` below the
  threshold, the rank is certified equal to the full spectrum's.

Each block of b columns costs two products of the n x n Gramians with an n x b block,
O(n^2 b), instead of the O(n^3) factorisation and eigenvalue problem of the full spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import _array as _a
from .balancing import _check_tau, _spectrum_of_gramians, rank_for_energy
from .gramians import common_dtype_gramians
from .systems import System

Array = Any

#: the Krylov space grows at most to this fraction of n before the full spectrum is cheaper
MAX_FRACTION = 0.3
#: the first look at the Ritz values is at this many times the rank the states' energies suggest
FIRST_LOOK = 1.6
#: a rank is given up on (full spectrum) when settling it would need this many times its size
SETTLING = 1.8
#: settled: S_(r-1) plus this many times its extrapolated remaining growth is below the threshold
SAFETY = 3.0
#: the start block's rows are weighted by the states' energies P_ii Q_ii (relative to the
#: largest), but never below this floor, so that every state is in it
START_FLOOR = 1e-3
#: the basis may drift this far from P-orthonormal (Frobenius norm) before it is not trusted
DRIFT = 1e-6


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


def _start_block(weights: Array, k: int, dtype: Any, xp: Any) -> Array:
    """A fixed, well-spread n x k start basis, row i scaled by ``weights[..., i]`` (deterministic;
    no random generator needed)."""
    n = weights.shape[-1]
    rows = xp.astype(xp.arange(1, n + 1, device=_a.device_of(weights)), xp.float64)[:, None]
    cols = xp.astype(xp.arange(1, k + 1, device=_a.device_of(weights)), xp.float64)[None, :]
    golden = (math.sqrt(5) - 1) / 2
    block = xp.cos(2 * math.pi * (golden * rows * cols + rows / (cols + golden)))
    return xp.astype(block * xp.astype(weights, xp.float64)[..., None], dtype)


def _real_diagonal(X: Array, xp: Any) -> Array:
    d = _a.diagonal(X, xp)
    return xp.real(d) if _a.is_complex(d, xp) else d


def _ranks(partial: Array, threshold: Array, xp: Any) -> Array:
    """Smallest j (1-based) with partial[..., j-1] >= threshold, k + 1 where there is none."""
    short = xp.astype(partial < threshold[..., None], xp.int64)
    return xp.sum(short, axis=-1) + 1


def _partial_sum(partial: Array, j: Array, xp: Any) -> Array:
    """S_j from the partial sums (S_1, ..., S_k), with S_0 = 0; j: (...) integers <= k."""
    padded = xp.concat([xp.zeros_like(partial[..., :1]), partial], axis=-1)
    return xp.take_along_axis(padded, j[..., None], axis=-1)[..., 0]


def _state_energies(P: Array, Q: Array, xp: Any) -> Array:
    """``P_ii Q_ii`` (..., n): the squared HSVs, were the states decoupled."""
    return _real_diagonal(P, xp) * _real_diagonal(Q, xp)


def _energy_estimate(energies: Array, tau: float, xp: Any) -> int:
    """The largest rank over the batch that the states' energies give: a plan for where to
    look, never the answer."""
    partial = xp.cumulative_sum(xp.flip(xp.sort(energies, axis=-1), axis=-1), axis=-1)
    return int(xp.max(_ranks(partial, (1 - tau) * partial[..., -1], xp)))


class _LanczosSpace:
    """The block Krylov space of QP from ``start``, its basis W orthonormal in the P inner
    product (classical Gram-Schmidt twice, the first pass from H), with ``PW`` and
    ``H = (PW)^H Q (PW)`` kept. Blocks are kept as rows, ``W^H`` (k, n) and ``(PW)^H = W^H P``:
    a product with the Hermitian P or Q is then ``Y^H P = (P Y)^H``, which BLAS streams faster
    than ``P Y`` (~10% at n = 1024, 16 columns), and the rows grow by contiguous appends."""

    def __init__(self, P: Array, Q: Array, start: Array, xp: Any) -> None:
        self.P, self.Q, self.xp = P, Q, xp
        self.Wh = self.PWh = self.H = None
        self.next = _a.mH(start, xp)  # (b, n): the next block's rows, (Q P Y_last)^H
        self.scale = 1.0  # 1 / (1 + drift) once the drift is known (see ``trust``)
        self.values: dict[int, Array] = {}  # unscaled Ritz values by dimension

    @property
    def dimension(self) -> int:
        return 0 if self.Wh is None else self.Wh.shape[-2]

    def grow(self) -> bool:
        """Add the next block; False where it is (numerically) inside the space already."""
        xp = self.xp
        Yh = self.next
        if self.Wh is not None:
            # W^H P (Q P Y_last) is H's last block column: Gram-Schmidt without a new product
            Yh = Yh - _a.mH(self.H[..., :, -Yh.shape[-2] :], xp) @ self.Wh
            Yh = Yh - _a.mH(self.PWh @ _a.mH(Yh, xp), xp) @ self.Wh  # no conjugated copy of PW
        PYh = Yh @ self.P
        G = PYh @ _a.mH(Yh, xp)
        try:
            L = xp.linalg.cholesky((G + _a.mH(G, xp)) / 2)
        except (ValueError, RuntimeError):  # NumPy, torch: not positive definite
            return False
        if not bool(xp.all(xp.isfinite(L))):  # JAX: NaN instead of an error
            return False
        normalise = xp.linalg.inv(L)
        Yh, PYh = normalise @ Yh, normalise @ PYh
        QPYh = PYh @ self.Q
        corner = PYh @ _a.mH(QPYh, xp)
        if self.Wh is None:
            self.Wh, self.PWh, self.H = Yh, PYh, corner
        else:
            side = self.PWh @ _a.mH(QPYh, xp)
            top = xp.concat([self.H, side], axis=-1)
            self.H = xp.concat([top, xp.concat([_a.mH(side, xp), corner], axis=-1)], axis=-2)
            self.Wh = xp.concat([self.Wh, Yh], axis=-2)
            self.PWh = xp.concat([self.PWh, PYh], axis=-2)
        self.next = QPYh
        return True

    def ritz_values(self, k: int) -> Array:
        """Lower bounds (..., k) of sigma_1^2 >= ... >= sigma_k^2: the Ritz values of the first
        k columns, times ``scale``."""
        if k not in self.values:
            xp = self.xp
            H = self.H[..., :k, :k]
            self.values[k] = xp.flip(xp.clip(xp.linalg.eigvalsh((H + _a.mH(H, xp)) / 2), min=0.0), axis=-1)
        return self.values[k] * self.scale

    def ritz_sums(self, k: int) -> Array:
        return self.xp.cumulative_sum(self.ritz_values(k), axis=-1)

    def trust(self) -> bool:
        """Scale the Ritz values by ``1 / (1 + ||W^H P W - I||_F)``, which keeps them below
        those of the exact pencil ``(H, W^H P W)``; False when the basis drifted beyond ``DRIFT``."""
        xp = self.xp
        G = self.PWh @ _a.mH(self.Wh, xp)
        drift = _a.frobenius_norm(G - _a.eye(self.dimension, G.dtype, G, xp), xp)
        self.scale = 1 / (1 + drift[..., None])
        return float(xp.max(drift)) <= DRIFT


def _decide(space: _LanczosSpace, threshold: Array, total: Array, b: int, xp: Any):
    """``(rank, certified)`` when every batch member's rank is certified or settled, else None.

    Settled: the Ritz sum of ``S_(r-1)`` grew by g1 in the last block and g0 in the one before;
    at that geometric rate ``rho = g1 / g0`` the rest of its growth is ``g1 rho / (1 - rho)``
    (an overestimate once the convergence speeds up, as Krylov convergence does), and
    ``SAFETY`` times that keeps it below the threshold."""
    k = space.dimension
    lower = space.ritz_sums(k)
    rank = _ranks(lower, threshold, xp)
    if not bool(xp.all(rank <= k)):
        return None
    before = _partial_sum(lower, rank - 1, xp)
    certified = before + xp.clip(total - lower[..., -1], min=0.0) < threshold
    settled = xp.zeros_like(certified)
    if k >= 3 * b and bool(xp.all(rank - 1 <= k - 2 * b)):
        one, two = (_partial_sum(space.ritz_sums(k - i * b), rank - 1, xp) for i in (1, 2))
        g1, g0 = before - one, one - two
        rho = g1 / xp.where(g0 > 0, g0, xp.ones_like(g0))
        converging = (g0 > 0) & (rho < 1)
        rest = g1 * rho / xp.where(converging, 1 - rho, xp.ones_like(rho))
        settled = (g1 <= 0) | (converging & (before + SAFETY * rest < threshold))
    if not bool(xp.all(certified | settled)):
        return None
    return rank, bool(xp.all(certified))


def hankel_rank(sys: System, tau: float, *, block: int = 16, horizon: int | None = None) -> EnergyRank:
    """Smallest r whose leading HSVs keep ``1 - tau`` of ``sum sigma_i^2``, without the full spectrum.

    The same decision as ``rank_for_energy(hankel_singular_values(sys), tau, energy="squared")``
    from a block Krylov space grown by ``block`` columns at a time (see the module docstring).
    The Ritz values are read after three blocks, then after every block from 1.6 times the rank
    that the states' energies ``P_ii Q_ii`` suggest (after two blocks only, where that is
    beyond the limit below). It stops when the rank is certified equal to
    the full spectrum's (``certified=True``), or when it is settled: the partial sum
    ``S_(r-1)``, grown on at the rate of its last two blocks, stays below the threshold with a
    margin of 3 (never smaller than the true rank in any case). It computes the full spectrum,
    from the same Gramians, instead: for small n; after that first look when the energies
    suggest a rank that needs more than 30% of n to settle; when the Ritz values do;
    and when the basis degenerates. Eager only (the stopping rule reads values). ``horizon``:
    the Gramians of ``gramians(sys, horizon=horizon)`` (L steps; None: infinite).

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
    rows = xp.vecdot(Q, P, axis=-1)  # sum_j conj(Q_ij) P_ij: trace(PQ) summed, Q Hermitian
    total = xp.sum(xp.real(rows) if _a.is_complex(rows, xp) else rows, axis=-1)
    threshold = (1 - tau) * total
    b = min(block, n)
    limit = int(MAX_FRACTION * n)
    energies = _state_energies(P, Q, xp)
    first = b * math.ceil(max(3 * b, FIRST_LOOK * _energy_estimate(energies, tau, xp)) / b)
    # the first look (then from ``first`` on, after every block); where the energies suggest
    # the full spectrum, a look after two blocks, which can only certify, checks them
    smallest = 2 * b if first > limit else 3 * b
    largest = xp.max(energies, axis=-1, keepdims=True)
    weights = xp.clip(energies / xp.where(largest > 0, largest, xp.ones_like(largest)), min=START_FLOOR)
    space = _LanczosSpace(P, Q, _start_block(weights, b, P.dtype, xp), xp)
    while smallest <= limit:
        grown = space.grow()
        k = space.dimension
        if grown and k != smallest and k < first:
            continue
        decision = _decide(space, threshold, total, b, xp) if k else None
        if decision is not None:
            if not space.trust():
                break
            decision = _decide(space, threshold, total, b, xp)  # with the drift-scaled values
            if decision is not None:
                rank, certified = decision
                return EnergyRank(rank, xp.sqrt(space.ritz_values(k)), total, certified, k)
        if not grown or k + b > limit or first > limit:
            break
        if SETTLING * int(xp.max(_ranks(space.ritz_sums(k), threshold, xp))) > limit:
            break
    hsv = _spectrum_of_gramians(P, Q, xp)
    return EnergyRank(rank_for_energy(hsv, tau, energy="squared"), hsv, total, True, n)
