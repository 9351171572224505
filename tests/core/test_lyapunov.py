"""Lyapunov solvers against SciPy, brute-force sums and hand-made failure cases, on every namespace."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from namespaces import as_xp, assert_in_namespace, eager_only, to_np
from oracles import finite_sum_lyapunov, scipy_discrete_lyapunov
from strategies import (
    BATCH_SHAPES,
    CORE,
    complex_poles,
    gaussian,
    hurwitz_matrix,
    seeds,
    stable_matrix,
    well_conditioned,
)

import compressm_core as cc

DENSE_METHODS = ["auto", "doubling", "kronecker"]
ALL_METHODS = [*DENSE_METHODS, "diagonal"]


def relative_error(X, reference) -> float:
    return float(np.linalg.norm(X - reference) / np.linalg.norm(reference))


def hermitian_psd(rng, n, is_complex) -> np.ndarray:
    G = gaussian(rng, (n, rng.integers(1, n + 1)), is_complex)
    return G @ G.conj().T


def stable_for(method, rng, n, is_complex, max_radius=0.95) -> np.ndarray:
    """A stable A that ``method`` accepts: diagonal (complex poles) for "diagonal", else dense."""
    if method == "diagonal":
        return np.diag(complex_poles(rng, n, (0.05, max_radius)))
    return stable_matrix(rng, n, is_complex, max_radius)


@st.composite
def stable_pairs(draw, *, method="auto", max_radius=0.95):
    """(A, Q) in NumPy, batched: A stable and real or complex, Q Hermitian semidefinite."""
    rng = np.random.default_rng(draw(seeds))
    n = draw(st.integers(1, 8 if method == "kronecker" else 12))  # Kronecker: n^2 x n^2 solves
    shape = draw(st.sampled_from(BATCH_SHAPES))
    complex_a, complex_q = draw(st.booleans()), draw(st.booleans())
    count = int(np.prod(shape))
    A = [stable_for(method, rng, n, complex_a, max_radius) for _ in range(count)]
    Q = [hermitian_psd(rng, n, complex_q) for _ in range(count)]
    return np.stack(A).reshape(*shape, n, n), np.stack(Q).reshape(*shape, n, n)


def members(*arrays):
    """The unbatched members of (..., n, n) arrays that share a batch shape."""
    for index in np.ndindex(arrays[0].shape[:-2]):
        yield tuple(a[index] for a in arrays)


# --- agreement with oracles -------------------------------------------------------------


def check_matches_scipy(xp, method, A, Q):
    X = cc.solve_discrete_lyapunov(as_xp(xp, A), as_xp(xp, Q), method=method)
    assert_in_namespace(X, xp)
    assert X.shape == A.shape
    for X_k, A_k, Q_k in members(to_np(X), A, Q):
        assert relative_error(X_k, scipy_discrete_lyapunov(A_k, Q_k)) < 1e-9


def fixed_pairs(method):
    """Batched (2, 5, 5) pairs: real A and Q, real A with complex Q, complex A and Q."""
    rng = np.random.default_rng(1)
    for complex_a, complex_q in [(False, False), (False, True), (True, True)]:
        A = np.stack([stable_for(method, rng, 5, complex_a) for _ in range(2)])
        Q = np.stack([hermitian_psd(rng, 5, complex_q) for _ in range(2)])
        yield A, Q


@eager_only
@pytest.mark.parametrize("method", ALL_METHODS)
@given(data=st.data())
@CORE
def test_discrete_solution_matches_scipy(xp, method, data):
    A, Q = data.draw(stable_pairs(method=method, max_radius=0.98 if method == "diagonal" else 0.95))
    check_matches_scipy(xp, method, A, Q)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_discrete_solution_matches_scipy_on_fixed_pairs(xp, method):
    for A, Q in fixed_pairs(method):
        check_matches_scipy(xp, method, A, Q)


@pytest.mark.parametrize("method", ALL_METHODS)
@given(seed=seeds, n=st.integers(1, 8), is_complex=st.booleans())
@CORE
def test_discrete_solution_matches_brute_force_sum(method, seed, n, is_complex):
    rng = np.random.default_rng(seed)
    A = stable_for(method, rng, n, is_complex, max_radius=0.9)
    Q = hermitian_psd(rng, n, is_complex)
    X = cc.solve_discrete_lyapunov(A, Q, method=method)
    assert relative_error(X, finite_sum_lyapunov(A, Q)) < 1e-10


def test_real_matrix_with_complex_right_hand_side():
    """The case where SciPy itself fails (METHOD.md): real A, complex Q, n = 12."""
    rng = np.random.default_rng(3)
    A = stable_matrix(rng, 12, is_complex=False)
    Q = hermitian_psd(rng, 12, is_complex=True)
    X = cc.solve_discrete_lyapunov(A, Q, method="doubling")
    assert float(cc.lyapunov_residual(A, X, Q)) < 1e-12
    assert relative_error(X, scipy_discrete_lyapunov(A, Q)) < 1e-10


@pytest.mark.parametrize("method", DENSE_METHODS)
def test_discrete_solution_under_jax_jit(method):
    """Traced arrays skip the convergence and stability checks and run the fixed steps."""
    jax = pytest.importorskip("jax")
    A, Q = next(fixed_pairs(method))
    solve = jax.jit(lambda A, Q: cc.solve_discrete_lyapunov(A, Q, method=method))
    X = np.asarray(solve(jax.numpy.asarray(A), jax.numpy.asarray(Q)))
    for X_k, A_k, Q_k in members(X, A, Q):
        assert relative_error(X_k, scipy_discrete_lyapunov(A_k, Q_k)) < 1e-9


@eager_only
@pytest.mark.parametrize("method", ALL_METHODS)
def test_batched_solution_equals_loop_over_members(xp, method):
    rng = np.random.default_rng(7)
    A = np.stack([stable_for(method, rng, 5, True) for _ in range(6)]).reshape(2, 3, 5, 5)
    Q = np.stack([hermitian_psd(rng, 5, True) for _ in range(6)]).reshape(2, 3, 5, 5)
    X = to_np(cc.solve_discrete_lyapunov(as_xp(xp, A), as_xp(xp, Q), method=method))
    for index in np.ndindex(2, 3):
        member = cc.solve_discrete_lyapunov(as_xp(xp, A[index]), as_xp(xp, Q[index]), method=method)
        np.testing.assert_allclose(
            X[index], to_np(member), rtol=1e-12, atol=1e-12 * np.abs(X).max()
        )


@eager_only
@pytest.mark.parametrize("method", DENSE_METHODS)
def test_one_matrix_broadcasts_against_a_batch_of_right_hand_sides(xp, method):
    rng = np.random.default_rng(8)
    A = stable_matrix(rng, 5, is_complex=False)
    Q = np.stack([hermitian_psd(rng, 5, False) for _ in range(2)])
    X = to_np(cc.solve_discrete_lyapunov(as_xp(xp, A), as_xp(xp, Q), method=method))
    assert X.shape == (2, 5, 5)
    for X_k, Q_k in zip(X, Q, strict=True):
        assert relative_error(X_k, scipy_discrete_lyapunov(A, Q_k)) < 1e-10


def hurwitz_pairs(rng, n, shape, is_complex):
    count = int(np.prod(shape))
    A = np.stack([hurwitz_matrix(rng, n, is_complex) for _ in range(count)]).reshape(*shape, n, n)
    Q = np.stack([hermitian_psd(rng, n, is_complex) for _ in range(count)]).reshape(*shape, n, n)
    return A, Q


def check_continuous_matches_scipy(xp, A, Q):
    X = cc.solve_continuous_lyapunov(as_xp(xp, A), as_xp(xp, Q))
    assert_in_namespace(X, xp)
    for X_k, A_k, Q_k in members(to_np(X), A, Q):
        assert relative_error(X_k, scipy.linalg.solve_continuous_lyapunov(A_k, -Q_k)) < 1e-9


@eager_only
@given(
    seed=seeds, n=st.integers(1, 12), shape=st.sampled_from(BATCH_SHAPES), is_complex=st.booleans()
)
@CORE
def test_continuous_solution_matches_scipy(xp, seed, n, shape, is_complex):
    A, Q = hurwitz_pairs(np.random.default_rng(seed), n, shape, is_complex)
    check_continuous_matches_scipy(xp, A, Q)


@pytest.mark.parametrize("is_complex", [False, True])
def test_continuous_solution_matches_scipy_on_fixed_pairs(xp, is_complex):
    A, Q = hurwitz_pairs(np.random.default_rng(2), 5, (2,), is_complex)
    check_continuous_matches_scipy(xp, A, Q)


# --- residuals ---------------------------------------------------------------------------


@eager_only
@pytest.mark.parametrize("method", ALL_METHODS)
@given(data=st.data())
@CORE
def test_discrete_residual_is_small(xp, method, data):
    A, Q = (as_xp(xp, M) for M in data.draw(stable_pairs(method=method)))
    X = cc.solve_discrete_lyapunov(A, Q, method=method)
    residual = cc.lyapunov_residual(A, X, Q)
    assert_in_namespace(residual, xp)
    assert residual.shape == A.shape[:-2]
    assert np.all(to_np(residual) < 1e-11)


@eager_only
def test_continuous_residual_is_small(xp):
    rng = np.random.default_rng(4)
    A = as_xp(xp, hurwitz_matrix(rng, 5, is_complex=True))
    Q = as_xp(xp, hermitian_psd(rng, 5, is_complex=True))
    X = cc.solve_continuous_lyapunov(A, Q)
    assert float(cc.lyapunov_residual(A, X, Q, discrete=False)) < 1e-11


@eager_only
@pytest.mark.parametrize("discrete", [True, False])
def test_lyapunov_residual_matches_its_formula(xp, discrete):
    rng = np.random.default_rng(5)
    A, X, Q = (gaussian(rng, (2, 4, 4), is_complex=True) for _ in range(3))
    result = to_np(
        cc.lyapunov_residual(as_xp(xp, A), as_xp(xp, X), as_xp(xp, Q), discrete=discrete)
    )
    Ah = A.conj().swapaxes(-1, -2)
    R = A @ X @ Ah - X + Q if discrete else A @ X + X @ Ah + Q
    expected = np.linalg.norm(R, axis=(-2, -1)) / np.linalg.norm(Q, axis=(-2, -1))
    np.testing.assert_allclose(result, expected, rtol=1e-12)


# --- precision -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("is_complex", [False, True])
def test_single_precision_in_single_precision_out(xp, method, is_complex):
    """float32 (complex64) stays float32 (complex64), accurate to ~1e-5 for spectral radius <= 0.9."""
    rng = np.random.default_rng(6)
    A = stable_for(method, rng, 5, is_complex, max_radius=0.9)
    Q = hermitian_psd(rng, 5, is_complex)
    single = np.complex64 if np.iscomplexobj(A) or is_complex else np.float32
    X = cc.solve_discrete_lyapunov(
        as_xp(xp, A.astype(single)), as_xp(xp, Q.astype(single)), method=method
    )
    assert to_np(X).dtype == single
    assert relative_error(to_np(X), scipy_discrete_lyapunov(A, Q)) < 1e-5


# --- failures ----------------------------------------------------------------------------


def _unstable(radius) -> np.ndarray:
    """A diagonal 3x3 A whose largest pole has modulus ``radius``."""
    return np.diag([0.5, -0.2, radius])


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("A", [_unstable(1.05), _unstable(-1.05), _unstable(1.0), np.eye(3)])
def test_unstable_or_marginal_matrix_is_rejected(xp, method, A):
    with pytest.raises(ValueError, match="not stable"):
        cc.solve_discrete_lyapunov(as_xp(xp, A), as_xp(xp, np.eye(3)), method=method)


def _rotation(angle) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _dense_unstable() -> np.ndarray:
    """A dense 6x6 matrix with an eigenvalue 1.05 (a random similarity of a diagonal one)."""
    T = well_conditioned(np.random.default_rng(9), 6, is_complex=False)
    return T @ np.diag([1.05, 0.5, 0.3, -0.2, 0.1, 0.7]) @ np.linalg.inv(T)


@pytest.mark.parametrize("method", DENSE_METHODS)
@pytest.mark.parametrize(
    "A",
    [_dense_unstable(), np.roll(np.eye(3), 1, axis=0), _rotation(1.0), 1.01 * _rotation(2.0)],
    ids=["similar-to-1.05", "cyclic-permutation", "rotation", "scaled-rotation"],
)
def test_unstable_or_marginal_dense_matrix_is_rejected(xp, method, A):
    with pytest.raises(ValueError, match="not stable"):
        cc.solve_discrete_lyapunov(as_xp(xp, A), as_xp(xp, np.eye(A.shape[0])), method=method)


@pytest.mark.parametrize("eigenvalue", [0.3, 0.0])
def test_non_hurwitz_matrix_is_rejected(xp, eigenvalue):
    A = np.diag([-1.0, -0.5, eigenvalue])
    with pytest.raises(ValueError, match="not Hurwitz"):
        cc.solve_continuous_lyapunov(as_xp(xp, A), as_xp(xp, np.eye(3)))


@pytest.mark.parametrize("solver", [cc.solve_discrete_lyapunov, cc.solve_continuous_lyapunov])
@pytest.mark.parametrize(
    ("A", "Q", "name"),
    [
        (np.zeros((3, 3)), np.eye(2), "`Q`"),  # sizes differ
        (np.zeros((3, 2)), np.eye(2), "`A`"),  # not square
        (np.zeros((2, 2)), np.ones((2, 3)), "`Q`"),  # not square
        (np.zeros((2, 3, 3)), np.ones((4, 3, 3)), "batch shapes"),
        (np.array([[0.5, np.nan], [0.0, 0.5]]), np.eye(2), "`A`"),
        (np.zeros((2, 2)), np.array([[1.0, 0.0], [0.0, np.inf]]), "`Q`"),
        (np.zeros((2, 2), dtype=np.int64), np.eye(2), "`A`"),
        (np.zeros((2, 2)), np.eye(2, dtype=np.int32), "`Q`"),
    ],
)
def test_bad_input_is_rejected_naming_the_argument(xp, solver, A, Q, name):
    with pytest.raises(ValueError, match=name):
        solver(as_xp(xp, A), as_xp(xp, Q))


def test_diagonal_method_rejects_a_dense_matrix(xp):
    A = np.array([[0.5, 0.1], [0.0, 0.2]])
    with pytest.raises(ValueError, match="diagonal"):
        cc.solve_discrete_lyapunov(as_xp(xp, A), as_xp(xp, np.eye(2)), method="diagonal")


def test_unknown_method_is_rejected(xp):
    with pytest.raises(ValueError, match="`method`"):
        cc.solve_discrete_lyapunov(as_xp(xp, 0.5 * np.eye(2)), as_xp(xp, np.eye(2)), method="schur")


@eager_only
@pytest.mark.parametrize("solve", ["discrete", "continuous"])
def test_inputs_are_not_modified(xp, solve):
    rng = np.random.default_rng(10)
    A_np = stable_matrix(rng, 5, True) if solve == "discrete" else hurwitz_matrix(rng, 5, True)
    Q_np = hermitian_psd(rng, 5, True)
    A, Q = as_xp(xp, A_np), as_xp(xp, Q_np)
    if solve == "discrete":
        for method in DENSE_METHODS:
            cc.solve_discrete_lyapunov(A, Q, method=method)
    else:
        cc.solve_continuous_lyapunov(A, Q)
    np.testing.assert_array_equal(to_np(A), A_np)
    np.testing.assert_array_equal(to_np(Q), Q_np)
