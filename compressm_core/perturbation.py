"""Weyl perturbation bounds: how far Hankel singular values can move, and when the ranking is safe.

Weyl's inequality for singular values, ``|sigma_i(M + E) - sigma_i(M)| <= ||E||_2``, applied
to the factor products ``M = Lq^H Lp`` of two systems bounds every HSV's movement by
``||Lq'^H Lp' - Lq^H Lp||_2``. If the gap ``sigma_r - sigma_(r+1)`` exceeds twice that
bound, the set of the r largest states cannot change between the two systems.
"""

from __future__ import annotations

from typing import Any, Literal

from . import _array as _a
from .gramians import gramian_factors
from .systems import System

Array = Any


def weyl_bound(
    sys: System,
    sys_perturbed: System,
    *,
    norm: Literal["frobenius", "spectral"] = "frobenius",
    horizon: int | None = None,
) -> Array:
    """Upper bound on ``max_i |hsv_i(sys) - hsv_i(sys_perturbed)|``, shape (...), for the HSVs
    of ``hankel_singular_values(..., horizon=horizon)``.

    ``norm="frobenius"`` (default) bounds the spectral norm of the difference of the factor
    products by its Frobenius norm: no SVD is needed. ``"spectral"`` is tighter but costs
    an SVD. Both systems must have the same order; their Gramian factors are Cholesky
    factors, which depend continuously on the system.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from compressm_core import DiagonalStateSpace
    >>> a = DiagonalStateSpace(xp.asarray([0.5]), xp.asarray([[1.0]]), xp.asarray([[1.0]]))
    >>> b = DiagonalStateSpace(xp.asarray([0.5]), xp.asarray([[1.1]]), xp.asarray([[1.0]]))
    >>> round(float(weyl_bound(a, b)), 12)  # the HSV moves from 4/3 to 1.1 * 4/3
    0.133333333333
    """
    if sys.n != sys_perturbed.n:
        msg = f"`sys_perturbed` has order {sys_perturbed.n} but `sys` has order {sys.n}"
        raise ValueError(msg)
    if norm not in ("frobenius", "spectral"):
        msg = f"`norm` {norm!r} is unknown; choose 'frobenius' or 'spectral'"
        raise ValueError(msg)
    xp = sys.xp
    Lp, Lq = gramian_factors(sys, horizon=horizon)
    Lp2, Lq2 = gramian_factors(sys_perturbed, horizon=horizon)
    difference = _a.mH(Lq2, xp) @ Lp2 - _a.mH(Lq, xp) @ Lp
    if norm == "spectral":
        return xp.linalg.matrix_norm(difference, ord=2)
    return _a.frobenius_norm(difference, xp)


def ranking_is_stable(hsv: Array, bound: Array, rank: int) -> Array:
    """True where the r largest HSVs provably stay the r largest under a perturbation of size ``bound``.

    hsv (..., n) descending, bound (...) -> bool (...): ``hsv[r-1] - hsv[r] > 2 * bound``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> bool(ranking_is_stable(xp.asarray([3.0, 1.0]), xp.asarray(0.5), 1))
    True
    """
    n = hsv.shape[-1]
    rank = _a.check_integer("rank", rank, 1, n - 1)
    xp = _a.namespace(hsv)
    if _a.concrete_bool(xp.all(xp.asarray(bound) >= 0)) is False:
        msg = f"`bound` must be non-negative (it bounds how far the HSVs move), got {bound}"
        raise ValueError(msg)
    return hsv[..., rank - 1] - hsv[..., rank] > 2 * bound
