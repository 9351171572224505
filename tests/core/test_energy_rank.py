"""hankel_rank: the rank of the full spectrum (energy = sum of squared HSVs) from a Krylov
space, checked against the full spectrum and python-control's Gramians."""

from __future__ import annotations

import numpy as np
import pytest
from namespaces import diagonal_state_space, eager_only, state_space, to_np
from oracles import hsv_from_gramians, scipy_discrete_lyapunov
from strategies import complex_poles, gaussian, stable_matrix

import compressm_core as cc

TAUS = [0.3, 0.2, 0.1, 0.05, 0.02]


def lru_like(rng, n, m, batch=()):
    count = int(np.prod(batch))
    radius = (0.9, 0.999)
    poles = np.stack([complex_poles(rng, n, radius) for _ in range(count)]).reshape(*batch, n)
    B = gaussian(rng, (*batch, n, m), True) / np.sqrt(2 * m)
    C = gaussian(rng, (*batch, m, n), True) / np.sqrt(2 * n)
    return poles, B, C


def diagonal_hsv(poles, B, C):
    """HSVs from the closed-form Gramians P_ij = (B B^H)_ij / (1 - p_i conj(p_j)) (NumPy)."""
    P = (B @ B.conj().T) / (1 - poles[:, None] * poles.conj()[None, :])
    Q = (C.conj().T @ C) / (1 - poles.conj()[:, None] * poles[None, :])
    return hsv_from_gramians(P, Q)


def dense_hsv(A, B, C):
    """HSVs from SciPy's Lyapunov solutions."""
    P = scipy_discrete_lyapunov(A, B @ B.conj().T)
    Q = scipy_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    return hsv_from_gramians((P + P.conj().T) / 2, (Q + Q.conj().T) / 2)


def full_rank(hsv, tau):
    """The oracle's energy rank: smallest r with sum_{i <= r} sigma_i^2 >= (1 - tau) sum sigma_i^2."""
    energy = np.cumsum(hsv**2, axis=-1)
    return np.argmax(energy >= (1 - tau) * energy[..., -1:], axis=-1) + 1


@eager_only
@pytest.mark.parametrize("tau", TAUS)
def test_rank_equals_that_of_the_full_spectrum(xp, tau):
    """n = 300 LRU-like system: the Krylov path (kept ranks 2-25% of n) or its fallback."""
    poles, B, C = lru_like(np.random.default_rng(1), 300, 16)
    result = cc.hankel_rank(diagonal_state_space(xp, poles, B, C), tau)
    hsv = diagonal_hsv(poles, B, C)
    assert int(result.rank) == full_rank(hsv, tau)
    np.testing.assert_allclose(float(result.total_energy), np.sum(hsv**2), rtol=1e-9)
    leading = to_np(result.leading_hsv)
    assert np.all(leading <= hsv[: leading.size] * (1 + 1e-9))  # Ritz values are lower bounds


@eager_only
def test_krylov_path_is_used_for_small_ranks_and_certified_when_the_bound_closes(xp):
    """A fast-decaying spectrum (n = 400, m = 2): the rank is found in a space far smaller than
    n, and certified by the two-sided bound."""
    rng = np.random.default_rng(2)
    poles = complex_poles(rng, 400, (0.1, 0.8))
    B, C = gaussian(rng, (400, 2), True), gaussian(rng, (2, 400), True)
    result = cc.hankel_rank(diagonal_state_space(xp, poles, B, C), 0.01)
    assert result.dimension < 400 * 0.3
    assert result.certified
    assert int(result.rank) == full_rank(diagonal_hsv(poles, B, C), 0.01)


@eager_only
def test_batched_ranks_equal_those_of_each_member(xp):
    poles, B, C = lru_like(np.random.default_rng(3), 160, 8, batch=(3,))
    result = cc.hankel_rank(diagonal_state_space(xp, poles, B, C), 0.2)
    expected = [full_rank(diagonal_hsv(poles[i], B[i], C[i]), 0.2) for i in range(3)]
    np.testing.assert_array_equal(to_np(result.rank), expected)


@eager_only
def test_dense_system_rank(xp):
    rng = np.random.default_rng(4)
    A = stable_matrix(rng, 120, False, 0.97)
    B, C = gaussian(rng, (120, 4), False), gaussian(rng, (4, 120), False)
    result = cc.hankel_rank(state_space(xp, A, B, C), 0.1)
    assert int(result.rank) == full_rank(dense_hsv(A, B, C), 0.1)


@eager_only
def test_bad_options_are_rejected(xp):
    system = diagonal_state_space(xp, np.array([0.5, 0.2]), np.ones((2, 1)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="`tau` must lie in"):
        cc.hankel_rank(system, 1.5)
    with pytest.raises(ValueError, match="`block` must be an integer"):
        cc.hankel_rank(system, 0.1, block=0)
    assert int(cc.hankel_rank(system, 0.1, block=np.int64(1)).rank) >= 1


@eager_only
def test_ranks_up_to_a_tenth_of_n_come_from_a_small_subspace(xp):
    """The benchmark's kind of system (n = 500, m = p = 32, poles 0.9-0.999, slowly decaying
    HSVs): kept ranks of 2-10% of n are settled in a subspace well below n and equal SciPy's."""
    poles, B, C = lru_like(np.random.default_rng(5), 500, 32)
    hsv = diagonal_hsv(poles, B, C)
    system = diagonal_state_space(xp, poles, B, C)
    for tau in (0.3, 0.2, 0.1):
        result = cc.hankel_rank(system, tau)
        assert int(result.rank) == full_rank(hsv, tau) <= 50
        assert result.dimension <= 0.3 * 500


@eager_only
def test_a_rank_beyond_the_subspace_limit_comes_from_the_full_spectrum(xp):
    poles, B, C = lru_like(np.random.default_rng(5), 500, 32)
    result = cc.hankel_rank(diagonal_state_space(xp, poles, B, C), 0.01)
    assert (result.dimension, result.certified) == (500, True)
    assert int(result.rank) == full_rank(diagonal_hsv(poles, B, C), 0.01)


@eager_only
def test_uncontrollable_states_leave_the_rank_right(xp):
    """Only 20 of 300 states get input (P has rank 20): the Krylov basis runs out of
    directions after one block, and the full spectrum decides."""
    rng = np.random.default_rng(6)
    poles, B, C = lru_like(rng, 300, 8)
    B[20:] = 0
    result = cc.hankel_rank(diagonal_state_space(xp, poles, B, C), 0.05)
    assert int(result.rank) == full_rank(diagonal_hsv(poles, B, C), 0.05)
