"""Gramians and their factors against python-control (SLICOT) and a realified oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from namespaces import (
    as_xp,
    assert_in_namespace,
    diagonal_state_space,
    eager_only,
    state_space,
    to_np,
)
from oracles import (
    control_gramians,
    frequency_response,
    hinf_on_grid,
    hsv_any,
    realified_system,
    realify,
    scipy_discrete_lyapunov,
)
from strategies import (
    CORE,
    Diagonal,
    dense_systems,
    diagonal_systems,
    fixed_dense_systems,
    fixed_diagonal_system,
    gaussian,
)

import compressm_core as cc


def relative_error(X, reference) -> float:
    return float(np.linalg.norm(X - reference) / np.linalg.norm(reference))


def check_gramians_match_control(xp, system, P, Q):
    """P and Q (any namespace) against python-control's Gramians of each member of ``system``;
    complex systems through their real 2n-state realification, whose Gramians are realify(P)."""
    assert_in_namespace(P, xp)
    assert_in_namespace(Q, xp)
    P, Q = to_np(P), to_np(Q)
    for index, (A, B, C, _) in system.members():
        if any(np.iscomplexobj(M) for M in (A, B, C)):
            oracle = control_gramians(*realified_system(A, B, C))
            ours = realify(P[index]), realify(Q[index])
        else:
            oracle = control_gramians(A, B, C)
            ours = P[index], Q[index]
        for X, X_oracle in zip(ours, oracle, strict=True):
            assert relative_error(X, X_oracle) < 1e-9


@eager_only
@given(system=dense_systems())
@CORE
def test_dense_gramians_match_python_control(xp, system):
    check_gramians_match_control(xp, system, *cc.gramians(state_space(xp, *system)))


@eager_only
@given(system=diagonal_systems())
@CORE
def test_diagonal_gramians_match_realified_oracle(xp, system):
    """The closed form for complex poles; a dropped conjugate in Q (METHOD.md) fails this."""
    check_gramians_match_control(
        xp, system.dense(), *cc.gramians(diagonal_state_space(xp, *system))
    )


def test_gramians_match_python_control_on_fixed_systems(xp):
    for system in fixed_dense_systems():
        check_gramians_match_control(xp, system, *cc.gramians(state_space(xp, *system)))
    system = fixed_diagonal_system()
    check_gramians_match_control(
        xp, system.dense(), *cc.gramians(diagonal_state_space(xp, *system))
    )


@eager_only
@given(system=diagonal_systems())
@CORE
def test_diagonal_and_dense_paths_agree(xp, system):
    P_diagonal, Q_diagonal = cc.gramians(diagonal_state_space(xp, *system))
    P_dense, Q_dense = cc.gramians(state_space(xp, *system.dense()))
    np.testing.assert_allclose(to_np(P_diagonal), to_np(P_dense), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(to_np(Q_diagonal), to_np(Q_dense), rtol=1e-9, atol=1e-12)


def test_controllability_and_observability_functions_match_gramians(xp):
    system = state_space(xp, *fixed_dense_systems()[1])
    P, Q = cc.gramians(system)
    np.testing.assert_array_equal(to_np(cc.controllability_gramian(system)), to_np(P))
    np.testing.assert_array_equal(to_np(cc.observability_gramian(system)), to_np(Q))


@eager_only
@pytest.mark.parametrize("horizon", [None, 5])
@pytest.mark.parametrize(
    ("poles_dtype", "B_dtype", "C_dtype"),
    [
        (np.float64, np.complex128, np.float64),  # real poles (both signs, zero), complex B
        (np.complex64, np.float64, np.complex64),  # single-precision poles and C
    ],
)
def test_diagonal_gramians_keep_each_closed_form_dtype(xp, horizon, poles_dtype, B_dtype, C_dtype):
    """``gramians`` forms the diagonal weights once for P and Q (Q's are their conjugates): each
    Gramian keeps the dtype it has alone and matches SciPy's Lyapunov solution (infinite
    horizon) or the sum of the first L terms."""
    rng = np.random.default_rng(11)
    n = 6
    if np.dtype(poles_dtype).kind == "c":
        poles = 0.95 * rng.uniform(0, 1, n) * np.exp(2j * np.pi * rng.uniform(0, 1, n))
    else:
        poles = np.array([0.9, -0.7, 0.0, -0.99, 0.3, 0.5])
    B = gaussian(rng, (n, 2), is_complex=np.dtype(B_dtype).kind == "c")
    C = gaussian(rng, (3, n), is_complex=np.dtype(C_dtype).kind == "c")
    poles, B, C = poles.astype(poles_dtype), B.astype(B_dtype), C.astype(C_dtype)
    system = diagonal_state_space(xp, poles, B, C)
    P, Q = cc.gramians(system, horizon=horizon)
    for X, alone, data in (
        (P, cc.controllability_gramian(system, horizon=horizon), B),
        (Q, cc.observability_gramian(system, horizon=horizon), C),
    ):
        assert X.dtype == alone.dtype == xp.result_type(xp.asarray(data), xp.asarray(poles))
    A = np.diag(poles.astype(complex))
    B, C = B.astype(complex), C.astype(complex)
    if horizon is None:
        P_ref = scipy_discrete_lyapunov(A, B @ B.conj().T)
        Q_ref = scipy_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    else:
        terms = [np.linalg.matrix_power(A, k) for k in range(horizon)]
        P_ref = sum(M @ B @ B.conj().T @ M.conj().T for M in terms)
        Q_ref = sum(M.conj().T @ C.conj().T @ C @ M for M in terms)
    tol = 1e-5 if poles_dtype == np.complex64 else 1e-12
    assert relative_error(to_np(P), P_ref) < tol
    assert relative_error(to_np(Q), Q_ref) < tol


# --- factors -----------------------------------------------------------------------------


def hermitian_pd(rng, shape, n) -> np.ndarray:
    G = gaussian(rng, (*shape, n, n), is_complex=True)
    return G @ G.conj().swapaxes(-1, -2) + 0.1 * np.eye(n)


@pytest.mark.parametrize("method", ["auto", "cholesky", "eigh"])
def test_factor_reproduces_a_positive_definite_matrix(xp, method):
    X = hermitian_pd(np.random.default_rng(0), (2,), 5)
    L = cc.gramian_factor(as_xp(xp, X), method=method)
    assert_in_namespace(L, xp)
    L = to_np(L)
    np.testing.assert_allclose(
        L @ L.conj().swapaxes(-1, -2), X, rtol=1e-12, atol=1e-12 * np.abs(X).max()
    )
    if method != "eigh":
        np.testing.assert_array_equal(L, np.tril(L))


def uncontrollable_system() -> Diagonal:
    """A diagonal system whose states 1 and 3 receive no input: two zero HSVs."""
    rng = np.random.default_rng(1)
    poles = np.array([0.5 + 0.3j, -0.4, 0.1j, 0.8, -0.6 - 0.2j])
    B = gaussian(rng, (5, 2), is_complex=True)
    B[[1, 3]] = 0
    return Diagonal(poles, B, gaussian(rng, (2, 5), is_complex=True), None)


def uncontrollable_gramian() -> np.ndarray:
    """P of ``uncontrollable_system()`` by the closed form: singular, semidefinite, rank 3."""
    poles, B, _, _ = uncontrollable_system()
    P = B @ B.conj().T / (1 - poles[:, None] * poles.conj()[None, :])
    assert np.linalg.matrix_rank(P) == 3
    return P


@pytest.mark.parametrize("method", ["auto", "eigh"])
def test_factor_of_a_singular_gramian(xp, method):
    P = uncontrollable_gramian()
    L = to_np(cc.gramian_factor(as_xp(xp, P), method=method))
    np.testing.assert_allclose(L @ L.conj().T, P, atol=1e-12 * np.abs(P).max())


def test_cholesky_factor_of_a_singular_gramian_is_rejected(xp):
    with pytest.raises(ValueError, match="positive definite"):
        cc.gramian_factor(as_xp(xp, uncontrollable_gramian()), method="cholesky")


def test_uncontrollable_system_has_hsv_and_a_reduced_model(xp):
    """The default factor falls back to eigh where Cholesky fails; HSVs and truncation work."""
    system = uncontrollable_system()
    dsys = diagonal_state_space(xp, *system)
    hsv = to_np(cc.hankel_singular_values(dsys))
    oracle = hsv_any(*system.dense()[:3])
    np.testing.assert_allclose(hsv, oracle, atol=1e-7 * oracle[0])  # zero HSVs: ~sqrt(eps) noise
    assert np.all(hsv[3:] < 1e-7 * hsv[0])
    reduced = cc.balanced_truncation(dsys, rank=3).system
    G = frequency_response(*system.dense()[:3])
    G_reduced = frequency_response(*(to_np(M) for M in (reduced.A, reduced.B, reduced.C)))
    assert hinf_on_grid(G - G_reduced) < 1e-7 * hsv[0]


def test_unknown_factor_method_is_rejected(xp):
    with pytest.raises(ValueError, match="`method`"):
        cc.gramian_factor(as_xp(xp, np.eye(2)), method="qr")


@pytest.mark.parametrize("method", ["cholesky", "eigh"])
def test_gramian_factors_reproduce_the_gramians(xp, method):
    system = diagonal_state_space(xp, *fixed_diagonal_system())
    P, Q = (to_np(X) for X in cc.gramians(system))
    Lp, Lq = (to_np(L) for L in cc.gramian_factors(system, method=method))
    np.testing.assert_allclose(
        Lp @ Lp.conj().swapaxes(-1, -2), P, rtol=1e-10, atol=1e-12 * np.abs(P).max()
    )
    np.testing.assert_allclose(
        Lq @ Lq.conj().swapaxes(-1, -2), Q, rtol=1e-10, atol=1e-12 * np.abs(Q).max()
    )


# --- unstable systems --------------------------------------------------------------------


@pytest.mark.parametrize(("pole", "modulus"), [(1j, "1"), (-1.0, "1"), (1.2 * np.exp(0.3j), "1.2")])
def test_unstable_diagonal_system_is_rejected_naming_the_modulus(xp, pole, modulus):
    poles = np.array([0.5, pole, -0.2j])
    with pytest.raises(ValueError, match=f"not stable: a pole has modulus {modulus} "):
        cc.gramians(diagonal_state_space(xp, poles, np.ones((3, 1)), np.ones((1, 3))))


def test_unstable_dense_system_is_rejected(xp):
    A = np.array([[0.5, 1.0, 0.0], [0.0, 1.1, 0.2], [0.0, 0.0, -0.3]])  # eigenvalues 0.5, 1.1, -0.3
    with pytest.raises(ValueError, match="not stable"):
        cc.gramians(state_space(xp, A, np.ones((3, 1)), np.ones((1, 3))))
