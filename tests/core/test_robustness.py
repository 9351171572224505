"""The core never answers wrongly in silence (issue 12, item 6): each case that once returned a
wrong result or a framework's error, checked against SciPy, SLICOT or a closed form."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from namespaces import as_xp, diagonal_state_space, state_space, to_np
from oracles import hsv_any
from strategies import complex_poles, gaussian, stable_matrix

import compressm_core as cc

# --- Lyapunov equations with a non-Hermitian right-hand side ---------------------------------


@pytest.mark.parametrize("method", ["auto", "doubling", "kronecker", "diagonal"])
@pytest.mark.parametrize("is_complex", [False, True])
def test_non_hermitian_right_hand_side_is_solved(xp, method, is_complex):
    """Once symmetrised away (residual 0.2-0.7); SciPy (A cast to complex) is the oracle."""
    rng = np.random.default_rng(12)
    n = 6 if method == "kronecker" else 10
    if method == "diagonal":
        A = np.diag(complex_poles(rng, n, (0.1, 0.9)))
    else:
        A = stable_matrix(rng, n, is_complex, 0.9)
    Q = gaussian(rng, (n, n), is_complex)  # neither symmetric nor Hermitian
    X = to_np(cc.solve_discrete_lyapunov(as_xp(xp, A), as_xp(xp, Q), method=method))
    oracle = scipy.linalg.solve_discrete_lyapunov(A.astype(complex), Q)
    np.testing.assert_allclose(X, oracle, rtol=1e-9, atol=1e-10 * np.abs(oracle).max())
    residual = A @ X @ A.conj().T - X + Q
    assert np.linalg.norm(residual) < 1e-10 * np.linalg.norm(Q)


def test_non_hermitian_right_hand_side_of_the_continuous_equation(xp):
    rng = np.random.default_rng(13)
    n = 7
    A = -np.eye(n) + 0.3 * gaussian(rng, (n, n), True)
    Q = gaussian(rng, (n, n), True)
    X = to_np(cc.solve_continuous_lyapunov(as_xp(xp, A), as_xp(xp, Q)))
    oracle = scipy.linalg.solve_continuous_lyapunov(A, -Q)
    np.testing.assert_allclose(X, oracle, rtol=1e-9, atol=1e-10 * np.abs(oracle).max())


def test_hermitian_right_hand_side_still_gives_an_exactly_hermitian_solution(xp):
    rng = np.random.default_rng(14)
    A = stable_matrix(rng, 10, True, 0.9)
    G = gaussian(rng, (10, 3), True)
    X = to_np(cc.solve_discrete_lyapunov(as_xp(xp, A), as_xp(xp, G @ G.conj().T)))
    assert np.array_equal(X, X.conj().T)


# --- to_diagonal on defective or nearly defective A --------------------------------------------


@pytest.mark.parametrize("gap", [0.0, 1e-10])
def test_defective_state_matrix_is_rejected_by_to_diagonal(xp, gap):
    """A Jordan block (or one a hair away): its modal form had entries ~1e16 and a transfer
    function 4x off; now a ValueError names the condition estimate."""
    A = np.array([[0.5, 1.0, 0.0], [0.0, 0.5 + gap, 1.0], [0.0, 0.0, 0.2]])
    system = state_space(xp, A, np.ones((3, 1)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="defective A: its eigenvector basis has condition"):
        cc.to_diagonal(system)


def test_max_condition_lets_a_caller_accept_a_worse_basis(xp):
    """Close eigenvalues (condition ~1e3) pass by default and fail under a strict limit; the
    accepted modal form keeps the transfer function (checked at z = 2 against the dense one)."""
    A = np.array([[0.5, 1.0], [0.0, 0.5 + 1e-3]])
    B, C = np.array([[1.0], [2.0]]), np.array([[1.0, -1.0]])
    system = state_space(xp, A, B, C)
    with pytest.raises(ValueError, match="max_condition = 100"):
        cc.to_diagonal(system, max_condition=100.0)
    modal = cc.to_diagonal(system)
    poles, Bd, Cd = (to_np(M) for M in (modal.poles, modal.B, modal.C))
    z = 2.0
    expected = C @ np.linalg.solve(z * np.eye(2) - A, B)
    np.testing.assert_allclose(Cd @ (Bd / (z - poles)[:, None]), expected, rtol=1e-10)


# --- semidefinite Gramians keep the small HSVs -------------------------------------------------


UNCONTROLLABLE = [1, 4, 5, 9]


def uncontrollable_diagonal_system(rng):
    """Complex poles; B has zero rows (uncontrollable states, decoupled since A is diagonal) and
    C is generic. The HSVs are those of the controllable 8-state part and four exact zeros; the
    old eigh fallback returned ~1e-8 sigma_1 for the zeros."""
    n = 12
    poles = complex_poles(rng, n, (0.3, 0.95))
    B = gaussian(rng, (n, 2), True)
    B[UNCONTROLLABLE] = 0.0
    C = gaussian(rng, (2, n), True)
    return poles, B, C


@pytest.mark.parametrize("method", ["auto", "svd", "eigh"])
def test_semidefinite_gramian_keeps_the_small_hsv_accurate(xp, method):
    poles, B, C = uncontrollable_diagonal_system(np.random.default_rng(15))
    hsv = to_np(cc.hankel_singular_values(diagonal_state_space(xp, poles, B, C), method=method))
    keep = np.setdiff1d(np.arange(12), UNCONTROLLABLE)
    controllable = hsv_any(np.diag(poles[keep]), B[keep], C[:, keep])  # positive definite Gramians
    np.testing.assert_allclose(hsv[:8], controllable, rtol=1e-9)
    assert np.all(np.abs(hsv[8:]) <= 1e-13 * controllable[0])


def test_eigh_factor_sets_the_rounding_level_eigenvalues_to_zero(xp):
    """Rank 2 in 5 dimensions: the factor reproduces X and has exactly 3 zero columns."""
    rng = np.random.default_rng(16)
    G = gaussian(rng, (5, 2), True)
    L = to_np(cc.gramian_factor(as_xp(xp, G @ G.conj().T), method="eigh"))
    np.testing.assert_allclose(L @ L.conj().T, G @ G.conj().T, atol=1e-13)
    assert np.sum(np.all(L == 0, axis=0)) == 3


# --- small defects -----------------------------------------------------------------------------


@pytest.mark.parametrize("solver", [cc.solve_discrete_lyapunov, cc.solve_continuous_lyapunov])
@pytest.mark.parametrize(
    ("options", "name"),
    [({"max_iterations": 0}, "max_iterations"), ({"tol": -1e-12}, "tol"), ({"tol": 0.0}, "tol")],
)
def test_bad_iteration_options_are_rejected_naming_them(xp, solver, options, name):
    """max_iterations=0 raised UnboundLocalError; tol < 0 called a stable A unstable."""
    A, Q = as_xp(xp, np.array([[-0.5]])), as_xp(xp, np.array([[1.0]]))
    with pytest.raises(ValueError, match=f"`{name}`"):
        solver(A, Q, method="doubling", **options) if solver is cc.solve_discrete_lyapunov else solver(
            A, Q, **options
        )


def test_empty_system_is_rejected_naming_the_order(xp):
    with pytest.raises(ValueError, match=r"no states \(n = 0\)"):
        state_space(xp, np.zeros((0, 0)), np.zeros((0, 1)), np.zeros((1, 0)))
    with pytest.raises(ValueError, match=r"no states \(n = 0\)"):
        diagonal_state_space(xp, np.zeros(0), np.zeros((0, 1)), np.zeros((1, 0)))


def test_numpy_integer_rank_is_accepted(xp):
    rng = np.random.default_rng(17)
    poles = complex_poles(rng, 6, (0.2, 0.9))
    system = diagonal_state_space(xp, poles, gaussian(rng, (6, 2), True), gaussian(rng, (2, 6), True))
    reduced = cc.balanced_truncation(system, rank=np.int64(2))
    assert reduced.rank == 2
    np.testing.assert_array_equal(
        to_np(reduced.system.A), to_np(cc.balanced_truncation(system, rank=2).system.A)
    )
    hsv = cc.hankel_singular_values(system)
    assert bool(cc.ranking_is_stable(hsv, as_xp(xp, np.array(0.0)), np.int64(2)))
    with pytest.raises(ValueError, match="`rank` must be an integer"):
        cc.balanced_truncation(system, rank=2.0)


def test_rank_for_energy_rejects_nan_and_empty_hsv(xp):
    """Once 1 for NaN HSVs and 0 for an empty spectrum."""
    with pytest.raises(ValueError, match="`hsv` holds 1 NaN or Inf"):
        cc.rank_for_energy(as_xp(xp, np.array([3.0, np.nan, 1.0])), 0.1)
    with pytest.raises(ValueError, match=r"`hsv` must have shape \(..., n\) with n >= 1"):
        cc.rank_for_energy(as_xp(xp, np.zeros(0)), 0.1)


def test_ranking_is_stable_rejects_a_negative_bound(xp):
    with pytest.raises(ValueError, match="`bound` must be non-negative"):
        cc.ranking_is_stable(as_xp(xp, np.array([3.0, 1.0])), as_xp(xp, np.array(-0.5)), 1)


@pytest.mark.parametrize("eigenvalue", [1.0, 0.0, 2.5])
def test_continuous_solver_names_a_non_hurwitz_matrix(xp, eigenvalue):
    """A = [[1]] made the Cayley transform singular: NumPy's "Singular matrix" escaped."""
    A = as_xp(xp, np.array([[eigenvalue, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="`A` is not Hurwitz"):
        cc.solve_continuous_lyapunov(A, as_xp(xp, np.eye(2)))


def half_precision_arrays(xp):
    """Half-precision arrays this namespace can make (float16, and bfloat16 where it exists)."""
    dtypes = [getattr(xp, "float16", None), getattr(xp, "bfloat16", None)]
    return [xp.asarray(np.array([[0.5]]), dtype=dtype) for dtype in dtypes if dtype is not None]


def test_half_precision_is_rejected_with_our_error(xp):
    arrays = half_precision_arrays(xp)
    if not arrays:
        pytest.skip(f"{xp.__name__} has no half-precision dtype")
    for A in arrays:
        with pytest.raises(ValueError, match="`A` must be float32, float64, complex64 or complex128"):
            cc.StateSpace(A, A, A)
        with pytest.raises(ValueError, match="`A` must be float32, float64"):
            cc.solve_discrete_lyapunov(A, xp.astype(A, xp.float32))
        with pytest.raises(ValueError, match="`poles` must be float32, float64"):
            cc.DiagonalStateSpace(A[0], A, A)
