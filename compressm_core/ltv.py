"""Gramians of linear time-varying (selective, Mamba-style) systems, and state selection by energy.

Over a sequence k = 0 .. L-1 a selective layer is, per channel, the time-varying system

    x[k+1] = A_k x[k] + B_k u[k],     y[k] = C_k x[k],

usually with a diagonal ``A_k = diag(a_k)`` (Mamba: ``a_k = exp(Delta_k A)``). Its finite-horizon
Gramians follow the recursions

    P_{k+1} = A_k P_k A_k^H + B_k B_k^H   (P_0 = 0),
    Q_k     = A_k^H Q_{k+1} A_k + C_k^H C_k   (Q_L = 0),

and the time averages ``P_bar = mean_{k=1..L} P_k``, ``Q_bar = mean_{k=0..L-1} Q_k`` (further
averaged over calibration sequences) play the role of the LTI Gramians: their "generalised"
Hankel singular values come from the square-root method. A layer that cannot absorb a dense
state transformation (per-channel diagonal A with B_k, C_k shared across channels) is reduced
by selecting state indices ranked by ``state_energy`` instead. See docs/ltv.md.
"""

from __future__ import annotations

from typing import Any

from . import _array as _a
from .balancing import rank_for_energy
from .gramians import FactorMethod, gramian_factor
from .systems import _check_values

Array = Any


def _check_sequence_shapes(
    transitions: Array, B: Array, C: Array, diagonal: bool
) -> tuple[int, ...]:
    """ValueError unless the shapes fit together; the broadcast batch shape."""
    shape = tuple(transitions.shape)
    if diagonal and transitions.ndim < 2:
        msg = f"`transitions` must have shape (..., L, n) when diagonal, got {shape}"
        raise ValueError(msg)
    if not diagonal and (transitions.ndim < 3 or transitions.shape[-1] != transitions.shape[-2]):
        msg = f"`transitions` must have shape (..., L, n, n) when dense, got {shape}"
        raise ValueError(msg)
    time_axis = -2 if diagonal else -3
    L, n = transitions.shape[time_axis], transitions.shape[-1]
    if L < 1:
        msg = f"`transitions` holds an empty sequence (L = 0, shape {shape})"
        raise ValueError(msg)
    if B.ndim < 3 or B.shape[-3] != L or B.shape[-2] != n:
        msg = (
            f"`B` must have shape (..., L, n, m) with L = {L}, n = {n} from `transitions`, "
            f"got {tuple(B.shape)}"
        )
        raise ValueError(msg)
    if C.ndim < 3 or C.shape[-3] != L or C.shape[-1] != n:
        msg = (
            f"`C` must have shape (..., L, p, n) with L = {L}, n = {n} from `transitions`, "
            f"got {tuple(C.shape)}"
        )
        raise ValueError(msg)
    shapes = (shape[:time_axis], tuple(B.shape[:-3]), tuple(C.shape[:-3]))
    try:
        return _a.batch_shape(*shapes)
    except ValueError:
        msg = f"the batch shapes of `transitions`, `B` and `C` do not broadcast: {shapes}"
        raise ValueError(msg) from None


def _batch_axis(name: str, axis: int, batch: tuple[int, ...]) -> int:
    """``axis`` of the batch shape as a non-negative index; ValueError when out of range."""
    if isinstance(axis, bool) or not isinstance(axis, int) or not -len(batch) <= axis < len(batch):
        msg = f"`{name}` must be an axis of the batch shape {tuple(batch)}, got {axis!r}"
        raise ValueError(msg)
    return axis % len(batch)


def _propagate(X: Array, A: Array, diagonal: bool, adjoint: bool, xp: Any) -> Array:
    """``A X A^H``, or ``A^H X A`` when ``adjoint``; A is (..., n) if diagonal, else (..., n, n)."""
    if diagonal:
        left, right = (_a.conj(A, xp), A) if adjoint else (A, _a.conj(A, xp))
        return X * (left[..., :, None] * right[..., None, :])
    if adjoint:
        return _a.mH(A, xp) @ X @ A
    return A @ X @ _a.mH(A, xp)


def _transition(transitions: Array, k: int, diagonal: bool) -> Array:
    """``A_k``: (..., n) when diagonal, else (..., n, n)."""
    return transitions[..., k, :] if diagonal else transitions[..., k, :, :]


def _controllability_recursion(
    transitions: Array, B: Array, diagonal: bool, zeros: Array, xp: Any
) -> tuple[Array, Array]:
    """``P_{k+1} = A_k P_k A_k^H + B_k B_k^H`` from ``P_0 = 0``: ``P_L``, ``sum_{k=1..L} P_k``."""
    P = P_sum = zeros
    for k in range(B.shape[-3]):
        A, b = _transition(transitions, k, diagonal), B[..., k, :, :]
        P = _propagate(P, A, diagonal, False, xp) + b @ _a.mH(b, xp)
        P_sum = P_sum + P
    return P, P_sum


def _observability_recursion(
    transitions: Array, C: Array, diagonal: bool, zeros: Array, xp: Any
) -> tuple[Array, Array]:
    """``Q_k = A_k^H Q_{k+1} A_k + C_k^H C_k`` from ``Q_L = 0``: ``Q_0``, ``sum_{k<L} Q_k``."""
    Q = Q_sum = zeros
    for k in reversed(range(C.shape[-3])):
        A, c = _transition(transitions, k, diagonal), C[..., k, :, :]
        Q = _propagate(Q, A, diagonal, True, xp) + _a.mH(c, xp) @ c
        Q_sum = Q_sum + Q
    return Q, Q_sum


def time_varying_gramians(
    transitions: Array,
    B: Array,
    C: Array,
    *,
    diagonal: bool = True,
    average: bool = True,
    calibration_axis: int | None = None,
) -> tuple[Array, Array]:
    """Controllability and observability Gramians of a time-varying system over a sequence.

    ``P_{k+1} = A_k P_k A_k^H + B_k B_k^H`` from ``P_0 = 0`` and
    ``Q_k = A_k^H Q_{k+1} A_k + C_k^H C_k`` from ``Q_L = 0``, for k = 0 .. L-1.

    Parameters
    ----------
    transitions : (..., L, n) array of the diagonals ``a_k`` of ``A_k = diag(a_k)`` when
        ``diagonal`` (then ``A_k P A_k^H = P * outer(a_k, conj(a_k))``), else (..., L, n, n).
    B : (..., L, n, m) array of the input matrices ``B_k``.
    C : (..., L, p, n) array of the output matrices ``C_k``.
    average : True: the time averages ``P_bar = mean_{k=1..L} P_k`` and
        ``Q_bar = mean_{k=0..L-1} Q_k``. False: the Gramians at the ends of the sequence,
        ``P_L`` (reachability of the final state) and ``Q_0`` (observability of the first).
    calibration_axis : an axis of the batch shape ``...`` that indexes calibration sequences;
        the Gramians are averaged over it (and it is removed). None: no such axis.

    The batch shapes of the three arrays broadcast (e.g. C shared by all channels). A Python
    loop over L runs batched array operations; no stability is needed (the horizon is finite).

    Returns
    -------
    P, Q : (..., n, n) Hermitian arrays of the common dtype of the inputs.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> a, b, c = xp.full((3, 1), 0.5), xp.ones((3, 1, 1)), xp.ones((3, 1, 1))
    >>> P, Q = time_varying_gramians(a, b, c)  # L = 3 steps of x+ = 0.5 x + u, y = x
    >>> float(P[0, 0]), float(Q[0, 0])  # mean of 1, 1.25, 1.3125
    (1.1875, 1.1875)
    >>> P_end, Q_start = time_varying_gramians(a, b, c, average=False)
    >>> float(P_end[0, 0]), float(Q_start[0, 0])  # 1 + 0.25 + 0.0625
    (1.3125, 1.3125)
    """
    xp = _a.namespace(transitions, B, C)
    batch = _check_sequence_shapes(transitions, B, C, diagonal)
    for name, value in (("transitions", transitions), ("B", B), ("C", C)):
        _check_values(name, value, xp)
    if calibration_axis is not None:
        calibration_axis = _batch_axis("calibration_axis", calibration_axis, batch)
    dtype = _a.result_dtype(xp, transitions, B, C)  # torch's matmul does not promote
    transitions, B, C = (xp.astype(M, dtype, copy=False) for M in (transitions, B, C))
    L, n = B.shape[-3], B.shape[-2]
    zeros = xp.zeros((*batch, n, n), dtype=dtype, device=_a.device_of(B))
    P_end, P_sum = _controllability_recursion(transitions, B, diagonal, zeros, xp)
    Q_start, Q_sum = _observability_recursion(transitions, C, diagonal, zeros, xp)
    P, Q = (P_sum / L, Q_sum / L) if average else (P_end, Q_start)
    P, Q = (P + _a.mH(P, xp)) / 2, (Q + _a.mH(Q, xp)) / 2
    if calibration_axis is not None:
        count = batch[calibration_axis]
        P, Q = xp.sum(P, axis=calibration_axis) / count, xp.sum(Q, axis=calibration_axis) / count
    return P, Q


def time_varying_gramian_diagonals(
    transitions: Array,
    B: Array,
    C: Array,
    *,
    average: bool = True,
    calibration_axis: int | None = None,
) -> tuple[Array, Array]:
    """The diagonals of ``time_varying_gramians`` for diagonal transitions, in O(L n (m + p)).

    With ``A_k = diag(a_k)`` the diagonal entries follow scalar recursions of their own,
    ``p_{k+1} = |a_k|^2 p_k + sum_j |B_k[:, j]|^2`` from ``p_0 = 0`` and
    ``q_k = |a_k|^2 q_{k+1} + sum_i |C_k[i, :]|^2`` from ``q_L = 0``: all that
    ``state_energy`` reads, without the (..., n, n) Gramians.

    transitions (..., L, n), B (..., L, n, m), C (..., L, p, n), ``average`` and
    ``calibration_axis`` as in ``time_varying_gramians``. Returns p, q: (..., n), real.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> a, b, c = xp.full((3, 1), 0.5), xp.ones((3, 1, 1)), xp.ones((3, 1, 1))
    >>> p, q = time_varying_gramian_diagonals(a, b, c)  # as time_varying_gramians
    >>> float(p[0]), float(q[0])
    (1.1875, 1.1875)
    """
    xp = _a.namespace(transitions, B, C)
    batch = _check_sequence_shapes(transitions, B, C, True)
    for name, value in (("transitions", transitions), ("B", B), ("C", C)):
        _check_values(name, value, xp)
    if calibration_axis is not None:
        calibration_axis = _batch_axis("calibration_axis", calibration_axis, batch)
    gains, inputs, outputs = (
        xp.real(M * _a.conj(M, xp)) if _a.is_complex(M, xp) else M * M for M in (transitions, B, C)
    )
    inputs, outputs = xp.sum(inputs, axis=-1), xp.sum(outputs, axis=-2)  # (..., L, n)
    L, n = B.shape[-3], B.shape[-2]
    zeros = xp.zeros((*batch, n), dtype=gains.dtype, device=_a.device_of(B))
    p = p_sum = q = q_sum = zeros
    for k in range(L):
        p = gains[..., k, :] * p + inputs[..., k, :]
        p_sum = p_sum + p
        q = gains[..., L - 1 - k, :] * q + outputs[..., L - 1 - k, :]
        q_sum = q_sum + q
    p, q = (p_sum / L, q_sum / L) if average else (p, q)
    if calibration_axis is not None:
        count = batch[calibration_axis]
        p, q = xp.sum(p, axis=calibration_axis) / count, xp.sum(q, axis=calibration_axis) / count
    return p, q


def _check_gramian_pair(P: Array, Q: Array, xp: Any) -> None:
    _a.check_square("P", P)
    _a.check_square("Q", Q)
    if P.shape[-1] != Q.shape[-1]:
        msg = f"`P` is {P.shape[-1]}x{P.shape[-1]} but `Q` is {Q.shape[-1]}x{Q.shape[-1]}"
        raise ValueError(msg)
    try:
        _a.batch_shape(P.shape[:-2], Q.shape[:-2])
    except ValueError:
        shapes = tuple(P.shape[:-2]), tuple(Q.shape[:-2])
        msg = f"the batch shapes of `P` {shapes[0]} and `Q` {shapes[1]} do not broadcast"
        raise ValueError(msg) from None
    _check_values("P", P, xp)
    _check_values("Q", Q, xp)


def hsv_from_gramians(P: Array, Q: Array, *, factor: FactorMethod = "auto") -> Array:
    """Hankel singular values of a Gramian pair, descending, shape (..., n).

    ``sigma = svdvals(Lq^H Lp)`` with ``P = Lp Lp^H`` and ``Q = Lq Lq^H`` (the square-root
    method of ``compressm_core.hankel_singular_values``), so ``sigma^2 = eig(P Q)``. Applied to
    the averaged Gramians of ``time_varying_gramians`` these are the "generalised" HSVs of a
    time-varying system; ``sum sigma^2 = trace(P Q)``. P, Q: (..., n, n) Hermitian semidefinite.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> P, Q = xp.asarray([[4.0, 0.0], [0.0, 1.0]]), xp.asarray([[1.0, 0.0], [0.0, 0.25]])
    >>> hsv_from_gramians(P, Q)  # sqrt(4 * 1), sqrt(1 * 0.25)
    Array([2. , 0.5], dtype=array_api_strict.float64)
    """
    xp = _a.namespace(P, Q)
    _check_gramian_pair(P, Q, xp)
    dtype = xp.result_type(P.dtype, Q.dtype)
    Lp = gramian_factor(xp.astype(P, dtype), method=factor, xp=xp)
    Lq = gramian_factor(xp.astype(Q, dtype), method=factor, xp=xp)
    return xp.linalg.svdvals(_a.mH(Lq, xp) @ Lp)


def _real_diagonal(X: Array, xp: Any) -> Array:
    d = _a.diagonal(X, xp)
    return xp.real(d) if _a.is_complex(d, xp) else d


def state_energy(P: Array, Q: Array, *, channel_axis: int | None = -1) -> Array:
    """Importance of each state index: ``s_i = sum over channels of P_ii Q_ii``, shape (..., n).

    ``P_ii Q_ii`` is state i's diagonal share of ``trace(P Q) = sum sigma^2``. For diagonal
    transitions, the states R deleted by index form a subsystem with Gramians ``P_RR, Q_RR``
    and ``trace(P_RR Q_RR) <= (sum_{i in R} sqrt(P_ii Q_ii))^2`` (docs/ltv.md). Use it where
    the layer cannot absorb a dense state transformation (Mamba: per-channel diagonal A, B_k
    and C_k shared across channels), so a state index is kept or removed in all channels.

    P, Q : (..., n, n) Gramians, e.g. from ``time_varying_gramians``.
    channel_axis : the axis of the batch shape ``...`` that holds the channels, summed over
        (default: the last one, for P of shape (..., H, n, n)). None: no sum.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> P = xp.stack([xp.eye(2), 2 * xp.eye(2)])  # 2 channels, 2 states
    >>> Q = xp.stack([xp.asarray([[3.0, 1.0], [1.0, 0.5]]), xp.eye(2)])
    >>> state_energy(P, Q)  # [1 * 3 + 2 * 1, 1 * 0.5 + 2 * 1]
    Array([5. , 2.5], dtype=array_api_strict.float64)
    """
    xp = _a.namespace(P, Q)
    _check_gramian_pair(P, Q, xp)
    return _channel_sum(_real_diagonal(P, xp) * _real_diagonal(Q, xp), channel_axis, xp)


def diagonal_state_energy(p: Array, q: Array, *, channel_axis: int | None = -1) -> Array:
    """``state_energy`` from the Gramians' diagonals (``time_varying_gramian_diagonals``):
    ``s_i = sum over channels of p_i q_i``, shape (..., n); p, q (..., n), real, non-negative.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> p, q = xp.asarray([[1.0, 1.0], [2.0, 2.0]]), xp.asarray([[3.0, 0.5], [1.0, 1.0]])
    >>> diagonal_state_energy(p, q)  # the example of state_energy, from its diagonals
    Array([5. , 2.5], dtype=array_api_strict.float64)
    """
    xp = _a.namespace(p, q)
    for name, value in (("p", p), ("q", q)):
        if value.ndim < 1 or not xp.isdtype(value.dtype, "real floating"):
            msg = f"`{name}` must be a real floating array of shape (..., n), got {value.dtype} {tuple(value.shape)}"
            raise ValueError(msg)
        _check_values(name, value, xp)
    if p.shape[-1] != q.shape[-1]:
        msg = f"`p` has {p.shape[-1]} states but `q` has {q.shape[-1]}"
        raise ValueError(msg)
    return _channel_sum(p * q, channel_axis, xp)


def _channel_sum(energy: Array, channel_axis: int | None, xp: Any) -> Array:
    if channel_axis is None:
        return energy
    axis = _batch_axis("channel_axis", channel_axis, energy.shape[:-1])
    return xp.sum(energy, axis=axis)


def _check_energy(energy: Array, xp: Any) -> None:
    if energy.ndim < 1 or energy.shape[-1] < 1:
        msg = f"`energy` must have shape (..., n) with n >= 1, got {tuple(energy.shape)}"
        raise ValueError(msg)
    if not xp.isdtype(energy.dtype, "real floating"):
        msg = f"`energy` must have a real floating dtype, got {energy.dtype}"
        raise ValueError(msg)
    _check_values("energy", energy, xp)
    if _a.concrete_bool(xp.any(energy < 0)):
        msg = f"`energy` must be non-negative, got a minimum of {float(xp.min(energy)):.6g}"
        raise ValueError(msg)


def states_to_keep(energy: Array, *, rank: int | None = None, tau: float | None = None) -> Array:
    """Indices of the states to keep, most important first, shape (..., r).

    Give exactly one of ``rank`` (keep the r states of largest energy, 1 <= r <= n) or ``tau``
    (the smallest set that keeps at least ``1 - tau`` of the total energy; for a batch, the
    largest such r over the batch). ``energy`` is (..., n), non-negative (``state_energy``).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> energy = xp.asarray([1.0, 6.0, 0.5, 2.5])
    >>> states_to_keep(energy, rank=2)
    Array([1, 3], dtype=array_api_strict.int64)
    >>> states_to_keep(energy, tau=0.05)  # 6 + 2.5 + 1 >= 0.95 * 10
    Array([1, 3, 0], dtype=array_api_strict.int64)
    """
    if (rank is None) == (tau is None):
        msg = f"give exactly one of `rank` or `tau`, got rank={rank!r}, tau={tau!r}"
        raise ValueError(msg)
    xp = _a.namespace(energy)
    _check_energy(energy, xp)
    n = energy.shape[-1]
    if tau is not None:
        descending = xp.sort(energy, axis=-1, descending=True)
        rank = int(xp.max(rank_for_energy(descending, tau, energy="sum")))
    elif isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank <= n:
        msg = f"`rank` must be an integer in [1, {n}] for {n} states, got {rank!r}"
        raise ValueError(msg)
    return xp.argsort(energy, axis=-1, descending=True, stable=True)[..., :rank]
