"""Hankel singular values and balanced truncation by the square-root method, batched.

With ``P = Lp Lp^H`` and ``Q = Lq Lq^H``, the Hankel singular values are the singular
values of ``Lq^H Lp`` (never ``sqrt(eig(P Q))`` of a non-Hermitian product). Writing
``Lq^H Lp = U S V^H``, the balancing transformation is ``T = Lp V S^-1/2`` with inverse
``Tinv = S^-1/2 U^H Lq^H``; keeping the first r columns gives the reduced system
``(Tinv A T, Tinv B, C T, D)`` with ``||G - G_r||_Hinf <= 2 sum_{i > r} sigma_i``.

With ``horizon=L`` the same is done with the time-limited Gramians ``P_L``, ``Q_L`` (sums over
L steps, see ``gramians``): time-limited balanced truncation (Gawronski & Juang 1990). It keeps
the states that carry the most energy over L steps; it has no a-priori H-inf error bound.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import array_api_compat

from . import _array as _a
from .gramians import FactorMethod, common_dtype_gramians, gramian_factor, gramian_factors
from .systems import DiagonalStateSpace, StateSpace, System

Array = Any
Energy = Literal["sum", "squared"]
SpectrumMethod = Literal["auto", "eigh", "svd"]

#: ``method="auto"`` keeps the "eigh" values where sigma_n >= EIGH_GATE * sqrt(eps) * sigma_1
EIGH_GATE = 100.0


def _eigh_on_host(Lp: Array, xp: Any) -> bool:
    """Whether the "eigh" values are left to NumPy: for eager JAX arrays on a CPU, which NumPy
    reads in place (traced ones are sent to the host in ``_spectrum_of_gramians``). At n = 1024
    on one thread JAX's eigvalsh (with eigenvectors) takes 1.10 s against NumPy's values-only
    0.28 s, and the complex product Lp^H Q Lp 0.67 s against 0.21 s."""
    return array_api_compat.is_jax_namespace(xp) and not _a.is_traced(Lp) and _a.on_cpu(Lp)


def _values_by_eigh(Lp: Array, Q: Array, xp: Any) -> Array:
    """sigma = sqrt(eigvalsh(Lp^H Q Lp)), descending: Lp^H Q Lp = (Lq^H Lp)^H (Lq^H Lp)."""
    if _eigh_on_host(Lp, xp):
        Lp_host, Q_host = _a.to_numpy(Lp), _a.to_numpy(Q)
        hsv = _values_by_eigh(Lp_host, Q_host, array_api_compat.array_namespace(Lp_host))
        return _a.from_numpy(hsv, Lp, xp)
    H = _a.mH(Lp, xp) @ (Q @ Lp)
    squares = xp.linalg.eigvalsh((H + _a.mH(H, xp)) / 2)
    return xp.flip(xp.sqrt(xp.clip(squares, min=0.0)), axis=-1)


def _eigh_values_are_accurate(hsv: Array, xp: Any) -> bool:
    """Whether sigma_n >= EIGH_GATE sqrt(eps) sigma_1 in every batch member (eager only)."""
    ratio = hsv[..., -1] / xp.where(hsv[..., 0] > 0, hsv[..., 0], xp.ones_like(hsv[..., 0]))
    return bool(xp.all(ratio >= EIGH_GATE * _a.eps(hsv.dtype, xp) ** 0.5))


def hankel_singular_values(
    sys: System,
    *,
    factor: FactorMethod = "auto",
    method: SpectrumMethod = "auto",
    horizon: int | None = None,
) -> Array:
    """Hankel singular values, descending, shape (..., n): sigma_i^2 are the
    eigenvalues of P Q, with the Gramians of ``gramians(sys, horizon=horizon)``: the infinite
    horizon ones of a stable system, or with ``horizon=L`` the time-limited ones over L steps
    (any system).

    ``method="svd"``: the singular values of ``Lq^H Lp`` (absolute error ~ eps sigma_1 for
    every value). ``"eigh"``: ``sqrt(eigvalsh(Lp^H Q Lp))``, one factorisation and a Hermitian
    eigenvalue problem instead of two factorisations and an SVD (2-3x cheaper), absolute error
    ~ eps sigma_1^2 / sigma_i, so small values lose digits. ``"auto"``: "eigh", kept where
    ``sigma_n >= 100 sqrt(eps) sigma_1`` (then every value is within ~sqrt(eps)/200 sigma_1,
    7e-11 sigma_1 in float64) and recomputed by "svd" otherwise. For JAX arrays on a CPU, eager
    or traced (``jax.jit``, ``jax.vmap``), "auto" and "eigh" run in NumPy on the same memory
    (values only; JAX's eigvalsh computes the eigenvectors too, 4x slower, its complex products
    are 3x slower, and its SVD is slower than NumPy's "eigh" from n ~ 1000); traced, through a
    host call (``jax.pure_callback``) whose derivatives are those of "svd" (of "eigh" for
    ``method="eigh"``). The values come back as a JAX array. "auto" is "svd" under
    ``torch.compile``, where the test cannot be read, and for JAX computations on other devices
    (GPU), where NumPy would cost a host round trip of n x n matrices and JAX's eigvalsh is slower
    than its values-only SVD. ``factor`` chooses the Gramian factorisation (see
    ``gramian_factor``).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from compressm_core import DiagonalStateSpace
    >>> hsv = hankel_singular_values(
    ...     DiagonalStateSpace(xp.asarray([0.5]), xp.asarray([[1.0]]), xp.asarray([[1.0]])))
    >>> round(float(hsv[0]), 12)  # |c b| / (1 - a^2)
    1.333333333333
    """
    if method not in ("auto", "eigh", "svd"):
        msg = f"`method` {method!r} is unknown; choose 'auto', 'eigh' or 'svd'"
        raise ValueError(msg)
    P, Q = common_dtype_gramians(sys, horizon=horizon)
    return _spectrum_of_gramians(P, Q, sys.xp, factor=factor, method=method)


def _spectrum_of_gramians(
    P: Array, Q: Array, xp: Any, *, factor: FactorMethod = "auto", method: SpectrumMethod = "auto"
) -> Array:
    """The HSVs (descending, (..., n)) of the Gramians P, Q of one dtype, as in
    ``hankel_singular_values`` (which computes the Gramians and calls this)."""
    if method != "svd" and _a.is_jax_traced(P):  # NumPy's values-only eigvalsh, on a CPU

        def compiled(P: Array, Q: Array) -> Array:  # elsewhere, and for derivatives
            if method == "eigh":
                return _values_by_eigh(gramian_factor(P, method=factor), Q, xp)
            return _spectrum_of_gramians(P, Q, xp, factor=factor, method="svd")

        on_host = partial(_spectrum_on_host, factor=factor, method=method)
        return _a.jax_host_call_on_cpu(on_host, compiled, P.shape[:-1], _a.real_dtype(P.dtype, xp), P, Q)
    Lp = gramian_factor(P, method=factor)
    if method == "auto" and _a.is_traced(Lp):
        method = "svd"  # the accuracy test cannot be read
    elif method == "auto" and array_api_compat.is_jax_namespace(xp) and not _a.on_cpu(Lp):
        method = "svd"  # off the CPU: JAX's eigvalsh adds eigenvectors, NumPy's a host round trip
    if method != "svd":
        hsv = _values_by_eigh(Lp, Q, xp)
        if method == "eigh" or _eigh_values_are_accurate(hsv, xp):
            return hsv
    Lq = gramian_factor(Q, method=factor)
    return xp.linalg.svdvals(_a.mH(Lq, xp) @ Lp)


def _spectrum_on_host(P: Any, Q: Any, *, factor: FactorMethod, method: SpectrumMethod) -> Any:
    """``_spectrum_of_gramians`` of NumPy Gramians (the host part of a traced JAX call)."""
    return _spectrum_of_gramians(P, Q, array_api_compat.array_namespace(P), factor=factor, method=method)


def _check_tau(tau: float) -> None:
    if not 0 < tau < 1:
        msg = f"`tau` must lie in (0, 1), got {tau}"
        raise ValueError(msg)


def rank_for_energy(hsv: Array, tau: float, *, energy: Energy = "sum") -> Array:
    """Smallest r whose leading HSVs keep at least ``(1 - tau)`` of the total energy.

    ``energy="sum"`` measures energy as ``sum(sigma)`` (the CompreSSM authors' choice);
    ``"squared"`` as ``sum(sigma^2)``. ``hsv`` is (..., n), descending; the result is an
    integer array of shape (...), each entry in [1, n].

    Examples
    --------
    >>> import array_api_strict as xp
    >>> int(rank_for_energy(xp.asarray([4.0, 3.0, 2.0, 1.0]), 0.3))  # 4 + 3 >= 0.7 * 10
    2
    """
    _check_tau(tau)
    if energy not in ("sum", "squared"):
        msg = f"`energy` {energy!r} is unknown; choose 'sum' or 'squared'"
        raise ValueError(msg)
    xp = _a.namespace(hsv)
    if hsv.ndim < 1 or hsv.shape[-1] == 0:
        msg = f"`hsv` must have shape (..., n) with n >= 1, got {tuple(hsv.shape)}"
        raise ValueError(msg)
    _a.check_finite("hsv", hsv, xp)
    weights = hsv if energy == "sum" else hsv * hsv
    kept = xp.cumulative_sum(weights, axis=-1)
    needed = (1 - tau) * kept[..., -1:]
    short = xp.astype(kept < needed, xp.int64)
    return xp.minimum(xp.sum(short, axis=-1) + 1, xp.asarray(hsv.shape[-1], device=_a.device_of(hsv)))


@dataclass(frozen=True)
class Reduction:
    """The result of ``balanced_truncation``.

    system: the reduced ``StateSpace`` of order ``rank`` (batched like the input).
    hsv: all Hankel singular values of the original system, (..., n), descending.
    T, Tinv: (..., n, r) and (..., r, n) with ``Tinv @ T = I`` and x ~ T x_reduced.
    error_bound: ``2 * sum`` of the discarded HSVs, (...): bounds ||G - G_r||_Hinf; NaN after a
    time-limited truncation (``horizon`` given), which has no a-priori bound.
    kept: indices (into ``hsv``) of the balanced states that were kept.
    """

    system: StateSpace
    hsv: Array
    T: Array
    Tinv: Array
    error_bound: Array
    kept: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.kept)


def _resolve_kept(
    hsv: Array, n: int, rank: int | None, tau: float | None, keep: Any, energy: Energy, xp: Any
) -> tuple[int, ...]:
    given = sum(option is not None for option in (rank, tau, keep))
    if given != 1:
        msg = f"give exactly one of `rank`, `tau` or `keep`, got rank={rank}, tau={tau}, keep={keep}"
        raise ValueError(msg)
    if keep is not None:
        try:
            kept = tuple(operator.index(i) for i in keep)
        except TypeError:  # not integers: reported below
            kept = ()
        if not kept or len(set(kept)) != len(kept) or not all(0 <= i < n for i in kept):
            msg = f"`keep` must hold distinct state indices in [0, {n}), got {keep}"
            raise ValueError(msg)
        return tuple(sorted(kept))
    if tau is not None:
        if _a.is_traced(hsv):
            msg = "`tau` chooses the rank from the HSVs' values, which a traced call cannot read; pass a static `rank`"
            raise ValueError(msg)
        rank = int(xp.max(rank_for_energy(hsv, tau, energy=energy)))
    return tuple(range(_a.check_integer("rank", rank, 1, n - 1)))


def balanced_truncation(
    sys: System,
    *,
    rank: int | None = None,
    tau: float | None = None,
    keep: Any = None,
    method: Literal["square_root", "balancing_free"] = "square_root",
    energy: Energy = "sum",
    factor: FactorMethod = "auto",
    horizon: int | None = None,
) -> Reduction:
    """Reduce a stable system (any system with a ``horizon``) by balanced truncation, batched.

    ``horizon=L`` balances the time-limited Gramians ``P_L``, ``Q_L`` (sums over L steps, see
    ``gramians``) instead, for any system (Gawronski & Juang 1990): the kept states hold the most
    energy over L steps, ``T^-1 P_L T^-H = T^H Q_L T = diag(kept hsv)``. The reduced system is
    then not guaranteed stable and no a-priori H-inf bound holds: ``error_bound`` is NaN.

    Give exactly one of ``rank`` (keep the r largest HSVs), ``tau`` (the smallest rank
    that keeps ``1 - tau`` of the HSV energy, see ``rank_for_energy``; for a batch, the
    largest such rank over the batch) or ``keep`` (indices of the balanced states to
    keep, e.g. the smallest ones for ablations). ``method="balancing_free"`` uses
    orthonormal bases of the same subspaces (better conditioned; same transfer function).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from compressm_core import DiagonalStateSpace
    >>> sys = DiagonalStateSpace(xp.asarray([0.9, 0.1]), xp.ones((2, 1)), xp.ones((1, 2)))
    >>> red = balanced_truncation(sys, rank=1)
    >>> red.rank, red.system.A.shape
    (1, (1, 1))
    """
    if method not in ("square_root", "balancing_free"):
        msg = f"`method` {method!r} is unknown; choose 'square_root' or 'balancing_free'"
        raise ValueError(msg)
    xp = sys.xp
    Lp, Lq = gramian_factors(sys, method=factor, horizon=horizon)
    U, hsv, Vh = xp.linalg.svd(_a.mH(Lq, xp) @ Lp, full_matrices=False)
    kept = _resolve_kept(hsv, sys.n, rank, tau, keep, energy, xp)
    index = xp.asarray(kept, device=_a.device_of(hsv))
    kept_hsv = xp.take(hsv, index, axis=-1)
    if _a.concrete_bool(xp.any(kept_hsv <= 0)):
        msg = (
            f"a kept Hankel singular value is zero (kept {len(kept)} of {sys.n} states): the "
            "system's minimal order is smaller; keep fewer states"
        )
        raise ValueError(msg)
    U1 = xp.take(U, index, axis=-1)
    V1 = xp.take(_a.mH(Vh, xp), index, axis=-1)
    if method == "square_root":
        scale = xp.astype(1 / xp.sqrt(kept_hsv), U1.dtype)
        T = (Lp @ V1) * scale[..., None, :]
        Tinv = scale[..., :, None] * (_a.mH(U1, xp) @ _a.mH(Lq, xp))
    else:
        T, _ = xp.linalg.qr(Lp @ V1)
        W, _ = xp.linalg.qr(Lq @ U1)
        Tinv = xp.linalg.solve(_a.mH(W, xp) @ T, _a.mH(W, xp))
    # A, B or C may be real where T is complex, and torch's matmul does not promote
    B, C = xp.astype(sys.B, T.dtype), xp.astype(sys.C, T.dtype)
    if isinstance(sys, DiagonalStateSpace):
        AT = sys.poles[..., :, None] * T
    else:
        AT = xp.astype(sys.A, T.dtype) @ T
    reduced = StateSpace(Tinv @ AT, Tinv @ B, C @ T, sys.D)
    discarded = xp.sum(hsv, axis=-1) - xp.sum(kept_hsv, axis=-1)
    error_bound = 2 * xp.clip(discarded, min=0.0)
    if horizon is not None:  # the bound holds for the infinite-horizon Gramians only
        error_bound = xp.full_like(error_bound, math.nan)
    return Reduction(reduced, hsv, T, Tinv, error_bound, kept)
