"""Time-limited (finite-horizon) Gramians, HSVs and balanced truncation against brute-force sums.

Oracle: ``P_L = sum_{k<L} A^k B B^H (A^H)^k`` and ``Q_L = sum_{k<L} (A^H)^k C^H C A^k`` summed
term by term in NumPy (every term semidefinite, so the plain sum is accurate), and SciPy's
Lyapunov solver for the infinite horizon.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from namespaces import assert_in_namespace, diagonal_state_space, state_space, to_np
from oracles import scipy_discrete_lyapunov
from strategies import fixed_dense_systems, fixed_diagonal_system, gaussian

import compressm_core as cc
from compressm_core.diagonal import real_output_system
from compressm_core.layers import factor_product, reduce_layer_system

HORIZONS = (1, 2, 7, 40)


def brute_force_gramians(A, B, C, horizon):
    """(P_L, Q_L) of one system by summing the L terms."""
    P = np.zeros((A.shape[0],) * 2, dtype=np.result_type(A, B, C, complex))
    Q = np.zeros_like(P)
    power = np.eye(A.shape[0])
    for _ in range(horizon):
        P += power @ B @ B.conj().T @ power.conj().T
        Q += power.conj().T @ C.conj().T @ C @ power
        power = A @ power
    return P, Q


def impulse_response(A, B, C, steps):
    """Markov parameters C A^k B, k < steps, as (steps, p, m)."""
    response, AkB = [], B
    for _ in range(steps):
        response.append(C @ AkB)
        AkB = A @ AkB
    return np.array(response)


def relative_error(X, reference) -> float:
    return float(np.linalg.norm(X - reference) / np.linalg.norm(reference))


def check_against_brute_force(system, P, Q, horizon, tol=1e-12):
    P, Q = to_np(P), to_np(Q)
    for index, member in system.members():
        dense = member.dense() if hasattr(member, "dense") else member
        P_L, Q_L = brute_force_gramians(dense.A, dense.B, dense.C, horizon)
        assert relative_error(P[index], P_L) < tol
        assert relative_error(Q[index], Q_L) < tol


@pytest.mark.parametrize("horizon", HORIZONS)
def test_dense_finite_gramians_are_the_sums(xp, horizon):
    for system in fixed_dense_systems():
        P, Q = cc.gramians(state_space(xp, *system), horizon=horizon)
        assert_in_namespace(P, xp)
        check_against_brute_force(system, P, Q, horizon)


@pytest.mark.parametrize("horizon", HORIZONS)
def test_diagonal_finite_gramians_are_the_sums(xp, horizon):
    system = fixed_diagonal_system()
    P, Q = cc.gramians(diagonal_state_space(xp, *system), horizon=horizon)
    assert_in_namespace(Q, xp)
    check_against_brute_force(system, P, Q, horizon)


@pytest.mark.namespaces("numpy", "array_api_strict", "torch")
def test_real_diagonal_with_negative_and_zero_poles(xp):
    """Real poles of both signs (z = p_i p_j < 0, odd and even L) and a pole at 0."""
    poles = np.array([0.9, -0.7, 0.0, -0.999, 0.3])
    rng = np.random.default_rng(3)
    B, C = rng.standard_normal((5, 2)), rng.standard_normal((3, 5))
    for horizon in (1, 6, 7):
        P, Q = cc.gramians(diagonal_state_space(xp, poles, B, C), horizon=horizon)
        assert to_np(P).dtype == np.float64
        P_L, Q_L = brute_force_gramians(np.diag(poles), B, C, horizon)
        assert relative_error(to_np(P), P_L) < 1e-13
        assert relative_error(to_np(Q), Q_L) < 1e-13


def test_horizon_one_is_the_input_and_output_products():
    system = fixed_dense_systems()[1]
    P, Q = cc.gramians(cc.StateSpace(*system), horizon=1)
    B, C = system.B, system.C
    np.testing.assert_allclose(P, B @ np.swapaxes(B.conj(), -1, -2), rtol=1e-14)
    np.testing.assert_allclose(Q, np.swapaxes(C.conj(), -1, -2) @ C, rtol=1e-14)


@pytest.mark.parametrize("kind", ["dense", "diagonal"])
def test_long_horizon_is_the_infinite_gramian(kind):
    """Poles of modulus <= 0.98: after 5000 steps the tail is 0.98^10000 ~ 1e-88."""
    system = fixed_dense_systems()[1] if kind == "dense" else fixed_diagonal_system()
    core = cc.StateSpace(*system) if kind == "dense" else cc.DiagonalStateSpace(*system)
    P, Q = cc.gramians(core, horizon=5000)
    for index, member in system.members():
        dense = member if kind == "dense" else member.dense()
        BBh, ChC = dense.B @ dense.B.conj().T, dense.C.conj().T @ dense.C
        assert relative_error(P[index], scipy_discrete_lyapunov(dense.A, BBh)) < 1e-11
        assert relative_error(Q[index], scipy_discrete_lyapunov(dense.A.conj().T, ChC)) < 1e-11


def test_near_integrator_poles_keep_their_digits():
    """|p| = 1 - 1e-9: the closed form and the doubling keep full relative accuracy where
    (1 - z^L) / (1 - z) and P - A^L P A^LH would lose ~8 digits to cancellation."""
    rng = np.random.default_rng(7)
    poles = (1 - np.array([1e-9, 3e-9, 1e-6, 1e-3])) * np.exp(1j * np.array([0.0, 1e-8, 0.3, -2.0]))
    B, C = gaussian(rng, (4, 2), True), gaussian(rng, (2, 4), True)
    V = np.eye(4) + 0.3 * rng.standard_normal((4, 4))  # non-normal dense realisation
    A = V @ np.diag(poles) @ np.linalg.inv(V)
    for system, dense in (
        (cc.DiagonalStateSpace(poles, B, C), (np.diag(poles), B, C)),
        (cc.StateSpace(A, V @ B, C @ np.linalg.inv(V)), (A, V @ B, C @ np.linalg.inv(V))),
    ):
        P, Q = cc.gramians(system, horizon=40)
        P_L, Q_L = brute_force_gramians(*dense, 40)
        assert relative_error(P, P_L) < 1e-12
        assert relative_error(Q, Q_L) < 1e-12


def test_unstable_systems_have_finite_horizon_gramians():
    poles = np.array([1.05, 0.5 + 0.9j, -1.0])  # outside and on the unit circle
    B, C = np.ones((3, 1)), np.ones((1, 3))
    P, Q = cc.gramians(cc.DiagonalStateSpace(poles, B, C), horizon=12)
    P_L, Q_L = brute_force_gramians(np.diag(poles), B, C, 12)
    assert relative_error(P, P_L) < 1e-13
    assert relative_error(Q, Q_L) < 1e-13
    with pytest.raises(ValueError, match="not stable"):
        cc.gramians(cc.DiagonalStateSpace(poles, B, C))


@pytest.mark.parametrize("horizon", [True, False, 0, -3, 2.0, "40", np.float64(3)])
def test_horizon_must_be_a_positive_integer(horizon):
    system = cc.DiagonalStateSpace(np.array([0.5]), np.ones((1, 1)), np.ones((1, 1)))
    for function in (cc.gramians, cc.hankel_singular_values, cc.gramian_factors):
        with pytest.raises(ValueError, match=rf"`horizon` must be a positive integer .* got {re_escape(horizon)}"):
            function(system, horizon=horizon)
    with pytest.raises(ValueError, match="`horizon`"):
        cc.balanced_truncation(system, rank=1, horizon=horizon)


def re_escape(value) -> str:
    return re.escape(repr(value))


def test_numpy_integer_horizons_are_accepted():
    system = cc.DiagonalStateSpace(np.array([0.5]), np.ones((1, 1)), np.ones((1, 1)))
    P, _ = cc.gramians(system, horizon=np.int64(2))
    assert float(P[0, 0]) == pytest.approx(1.25)


def hsv_oracle(P, Q) -> np.ndarray:
    """sqrt(eig(P Q)), descending (P Q is similar to a semidefinite matrix: real eigenvalues)."""
    return np.sqrt(np.sort(np.abs(np.linalg.eigvals(P @ Q)))[::-1])


@pytest.mark.parametrize("horizon", [3, 40])
def test_hsvs_are_roots_of_the_eigenvalues_of_the_finite_gramian_product(xp, horizon):
    for system, core in (
        (fixed_dense_systems()[2], lambda s: state_space(xp, *s)),
        (fixed_diagonal_system(), lambda s: diagonal_state_space(xp, *s)),
    ):
        hsv = to_np(cc.hankel_singular_values(core(system), horizon=horizon))
        for index, member in system.members():
            dense = member.dense() if hasattr(member, "dense") else member
            expected = hsv_oracle(*brute_force_gramians(dense.A, dense.B, dense.C, horizon))
            np.testing.assert_allclose(hsv[index], expected, rtol=0, atol=1e-9 * expected[0])


def test_horizon_ranks_fast_states_above_near_integrators():
    """Two decoupled states (diagonal B B^H and C^H C): sigma_i = |b_i c_i| g_i with g_i the
    Gramian factor of pole i, 1 / (1 - |p|^2) or (1 - |p|^2L) / (1 - |p|^2) over L steps. Pole
    0.999 with b = c = 0.1: sigma = 0.01 / 0.001999 = 5.0 (infinite), 0.01 * 9.955 = 0.0996 over 10
    steps; pole 0.5 with b = c = 1: sigma = 4/3 and 4/3 (1 - 0.25^10). The order flips, and a
    rank-1 truncation keeps the fast pole instead of the slow one."""
    poles = np.array([0.999, 0.5])
    B = C = np.diag([0.1, 1.0])
    system = cc.DiagonalStateSpace(poles, B, C)
    slow = 0.01 / (1 - 0.999**2)
    np.testing.assert_allclose(cc.hankel_singular_values(system), [slow, 4 / 3], rtol=1e-10)
    np.testing.assert_allclose(
        cc.hankel_singular_values(system, horizon=10), [4 / 3 * (1 - 0.25**10), slow * (1 - 0.999**20)], rtol=1e-10
    )
    assert cc.balanced_truncation(system, rank=1).system.A[0, 0] == pytest.approx(0.999)
    assert cc.balanced_truncation(system, rank=1, horizon=10).system.A[0, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["square_root", "balancing_free"])
def test_time_limited_truncation_balances_the_finite_gramians(xp, method):
    """T^-1 P_L T^-H = T^H Q_L T = diag(kept HSVs) with the brute-force P_L, Q_L (square root
    method; the balancing-free one spans the same subspaces, so its reduced Gramians differ
    but the transfer function does not); no a-priori bound."""
    horizon, rank = 12, 3
    system = fixed_dense_systems()[1]
    reduction = cc.balanced_truncation(state_space(xp, *system), rank=rank, horizon=horizon, method=method)
    assert np.all(np.isnan(to_np(reduction.error_bound)))
    T, Tinv, hsv = to_np(reduction.T), to_np(reduction.Tinv), to_np(reduction.hsv)
    for index, member in system.members():
        P_L, Q_L = brute_force_gramians(member.A, member.B, member.C, horizon)
        np.testing.assert_allclose(Tinv[index] @ T[index], np.eye(rank), atol=1e-10)
        if method == "square_root":
            kept = np.diag(hsv[index][:rank])
            scale = hsv[index][0]
            np.testing.assert_allclose(Tinv[index] @ P_L @ Tinv[index].conj().T, kept, atol=1e-9 * scale)
            np.testing.assert_allclose(T[index].conj().T @ Q_L @ T[index], kept, atol=1e-9 * scale)


def test_dropping_tiny_hsvs_keeps_the_response_over_the_horizon():
    """Three states of a 6-state system are barely reachable (B rows of 1e-7): their HSVs are
    ~1e-7 of the largest, and the reduced system's first L Markov parameters match."""
    rng = np.random.default_rng(11)
    poles = np.array([0.95, 0.6 + 0.3j, -0.4, 0.9j, 0.2, 0.99])
    B = gaussian(rng, (6, 2), True) * np.array([1, 1, 1, 1e-7, 1e-7, 1e-7])[:, None]
    C = gaussian(rng, (2, 6), True)
    system = cc.DiagonalStateSpace(poles, B, C)
    reduction = cc.balanced_truncation(system, rank=3, horizon=30)
    assert reduction.hsv[3] < 1e-6 * reduction.hsv[0]
    full = impulse_response(np.diag(poles), B, C, 30)
    reduced = impulse_response(reduction.system.A, reduction.system.B, reduction.system.C, 30)
    assert relative_error(reduced, full) < 1e-6


def test_hankel_rank_uses_the_finite_gramians():
    """Krylov path (n = 100, blocks of 4): its total energy is trace(P_L Q_L) of the
    brute-force sums, and its rank the full spectrum's."""
    rng = np.random.default_rng(5)
    n = 100
    poles = rng.uniform(0.3, 0.9995, n) * np.exp(1j * rng.uniform(-np.pi, np.pi, n))
    B, C = gaussian(rng, (n, 3), True), gaussian(rng, (3, n), True)
    system = cc.DiagonalStateSpace(poles, B, C)
    result = cc.hankel_rank(system, 0.5, block=4, horizon=20)
    P_L, Q_L = brute_force_gramians(np.diag(poles), B, C, 20)
    assert float(result.total_energy) == pytest.approx(np.trace(P_L @ Q_L).real, rel=1e-10)
    expected = cc.rank_for_energy(hsv_oracle(P_L, Q_L), 0.5, energy="squared")
    assert int(result.rank) >= int(expected)  # never smaller; equal when certified
    if result.certified:
        assert int(result.rank) == int(expected)


def test_weyl_bound_holds_for_time_limited_hsvs():
    system = fixed_diagonal_system()
    rng = np.random.default_rng(9)
    moved = cc.DiagonalStateSpace(system.poles * 0.99, system.B + 0.01 * gaussian(rng, system.B.shape, True), system.C)
    before = cc.hankel_singular_values(cc.DiagonalStateSpace(*system), horizon=15)
    after = cc.hankel_singular_values(moved, horizon=15)
    bound = cc.weyl_bound(cc.DiagonalStateSpace(*system), moved, horizon=15)
    assert np.all(np.max(np.abs(before - after), axis=-1) <= bound + 1e-12)
    infinite = cc.hankel_singular_values(cc.DiagonalStateSpace(*system))
    assert not np.allclose(before, infinite)  # the horizon reached the Gramians


def test_layer_functions_pass_the_horizon():
    """factor_product's singular values are the time-limited HSVs; reduce_layer_system with a
    horizon keeps the states the finite Gramians rank first and records no bound."""
    system = cc.DiagonalStateSpace(np.array([0.999, 0.5]), np.diag([0.1, 1.0]) + 0j, np.diag([0.1, 1.0]) + 0j)
    singular = np.linalg.svd(factor_product(system, horizon=10), compute_uv=False)
    np.testing.assert_allclose(singular, cc.hankel_singular_values(system, horizon=10), rtol=1e-12)
    limited = reduce_layer_system("layer", system, 1, horizon=10, real_output=False)
    assert limited.error_bound is None
    assert abs(complex(limited.system.poles[0])) == pytest.approx(0.5)
    infinite = reduce_layer_system("layer", system, 1, real_output=False)
    assert infinite.error_bound == pytest.approx(2 * 4 / 3)  # infinite horizon: the fast state goes, 2 sigma_2
    assert abs(complex(infinite.system.poles[0])) == pytest.approx(0.999)


def test_reduced_layer_poles_stay_within_the_layer_slowest_pole():
    """Time-limited truncation does not preserve stability: for this system its rank-1 reduced
    pole lies outside the unit circle; the layer path moves it in to the slowest old pole."""
    rng = np.random.default_rng(50)
    modulus = rng.uniform(0.5, 0.999, 8)
    poles = modulus * np.exp(1j * rng.uniform(0, np.pi, 8))
    B = rng.normal(size=(8, 2)) + 1j * rng.normal(size=(8, 2))
    C = rng.normal(size=(2, 8)) + 1j * rng.normal(size=(2, 8))
    system = cc.DiagonalStateSpace(poles, B, C)
    raw = cc.balanced_truncation(system, rank=1, horizon=10).system.A
    assert abs(complex(raw[0, 0])) > 1  # the case this test is about
    diagonal = reduce_layer_system("layer", system, 1, horizon=10, real_output=False).system
    assert abs(complex(diagonal.poles[0])) == pytest.approx(modulus.max(), rel=1e-12)
    assert np.angle(complex(diagonal.poles[0])) == pytest.approx(np.angle(complex(raw[0, 0])))



def test_reduce_layer_system_reports_the_poles_it_moved_in(escaping_poles):
    """At every rank, the count of poles moved in is the number of the truncated A's eigenvalues
    (NumPy) outside the layer's largest modulus, from the largest of them to that modulus; the
    returned poles lie within it. Infinite-horizon truncation is stable and moves none."""
    case = escaping_poles
    counts = []
    for rank in range(1, case.n):
        escaped = case.escaped(rank)
        reduced = reduce_layer_system("layer", case.system(), rank, horizon=case.horizon, real_output=False)
        counts.append(reduced.poles_moved_in)
        assert reduced.poles_moved_in == len(escaped)
        assert np.all(np.abs(reduced.system.poles) <= case.limit * (1 + 1e-12))
        if len(escaped):
            assert reduced.moved_from_modulus == pytest.approx(escaped[0], rel=1e-9)
            assert reduced.moved_to_modulus == pytest.approx(case.limit, rel=1e-12)
        else:
            assert reduced.moved_from_modulus is None and reduced.moved_to_modulus is None
        record = reduced.record("layer", case.n, rank)
        assert (record.poles_moved_in, record.moved_from_modulus, record.moved_to_modulus) == reduced[3:]
        infinite = reduce_layer_system("layer", case.system(), rank, real_output=False)
        assert (infinite.poles_moved_in, infinite.moved_from_modulus, infinite.moved_to_modulus) == (0, None, None)
    assert max(counts) >= 2 and 0 in counts


def test_real_output_cuts_count_a_moved_conjugate_pair_once(escaping_poles):
    """Balancing the real-output map (2n real states), a conjugate pair of reduced poles becomes
    one state of the new layer: the count is that of the truncated real A's eigenvalues (NumPy)
    outside the layer's largest modulus with imaginary part >= 0."""
    case = escaping_poles
    real = real_output_system(case.system())
    counts = []
    for rank in range(1, real.n):
        A = np.asarray(cc.balanced_truncation(real, rank=rank, horizon=case.horizon).system.A)
        eigenvalues = np.linalg.eigvals(A)
        escaped = eigenvalues[(np.abs(eigenvalues) > case.limit) & (eigenvalues.imag >= 0)]
        reduced = reduce_layer_system("layer", case.system(), rank, gramians="real_output", horizon=case.horizon)
        counts.append(reduced.poles_moved_in)
        assert reduced.poles_moved_in == len(escaped)
        assert np.all(np.abs(reduced.system.poles) <= case.limit * (1 + 1e-12))
        if len(escaped):
            assert reduced.moved_from_modulus == pytest.approx(np.abs(escaped).max(), rel=1e-9)
    assert max(counts) >= 2

def test_jit_with_a_static_horizon_equals_eager():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    system = fixed_diagonal_system()
    arrays = [jnp.asarray(M) for M in system[:3]]

    def hsv(poles, B, C, *, horizon):
        return cc.hankel_singular_values(cc.DiagonalStateSpace(poles, B, C), horizon=horizon)

    jitted = jax.jit(hsv, static_argnames="horizon")
    eager = np.asarray(hsv(*arrays, horizon=40))
    np.testing.assert_allclose(np.asarray(jitted(*arrays, horizon=40)), eager, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(jitted(*arrays, horizon=3)), np.asarray(hsv(*arrays, horizon=3)), rtol=1e-10)
    dense = fixed_dense_systems()[1]
    dense_arrays = [jnp.asarray(M) for M in dense[:3]]
    dense_hsv = jax.jit(lambda A, B, C: cc.hankel_singular_values(cc.StateSpace(A, B, C), horizon=40))
    np.testing.assert_allclose(
        np.asarray(dense_hsv(*dense_arrays)), cc.hankel_singular_values(cc.StateSpace(*dense[:3]), horizon=40), rtol=1e-10
    )


def test_geometric_sums_at_z_one_zero_and_minus_one():
    """z_ij = p_i conj(p_j) for poles 1, 0, 1 - 1e-12 and -1: the sums 1 + z + ... + z^4."""
    from compressm_core.gramians import geometric_sums

    poles = np.array([1.0 + 0j, 0j, 1 - 1e-12 + 0j, -1 + 0j])
    sums = geometric_sums(poles, 5, np)
    z = poles[:, None] * poles.conj()[None, :]
    expected = sum(z**k for k in range(5))
    np.testing.assert_allclose(sums, expected, rtol=1e-14, atol=1e-14)
    assert sums[0, 0] == 5 and sums[1, 1] == 1 and sums[3, 3] == 5 and sums[0, 3] == pytest.approx(1)
    assert math.isfinite(abs(sums[2, 2]))
