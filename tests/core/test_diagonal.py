"""Re-diagonalisation and the real-output view of diagonal systems, against frequency responses,
brute-force simulation and python-control."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import assume, given
from hypothesis import strategies as st
from namespaces import (
    assert_in_namespace,
    diagonal_state_space,
    eager_only,
    numpy_system,
    state_space,
    to_np,
)
from oracles import (
    control_hsv,
    frequency_response,
    real_output_realisation,
    simulate,
    simulate_diagonal,
)
from strategies import (
    CORE,
    CORE_SLOW,
    Dense,
    Diagonal,
    dense_systems,
    fixed_dense_systems,
    make_diagonal,
    seeds,
    well_conditioned,
)

import compressm_core as cc


def assert_same_response(G, G_reference):
    assert np.abs(G - G_reference).max() <= 1e-9 * np.abs(G_reference).max()


# --- to_diagonal ---------------------------------------------------------------------------


def check_transfer_function_kept(xp, system: Dense):
    dsys = cc.to_diagonal(state_space(xp, *system))
    assert isinstance(dsys, cc.DiagonalStateSpace)
    assert_in_namespace(dsys.poles, xp)
    assert dsys.poles.shape == system.A.shape[:-1]
    for (_, member), (_, diagonal) in zip(
        system.members(), numpy_system(dsys).members(), strict=True
    ):
        assert_same_response(frequency_response(*diagonal.dense()), frequency_response(*member))


@eager_only
@given(system=dense_systems())
@CORE
def test_to_diagonal_keeps_the_transfer_function(xp, system):
    check_transfer_function_kept(xp, system)


def test_to_diagonal_keeps_the_transfer_function_on_fixed_systems(xp):
    for system in fixed_dense_systems():
        check_transfer_function_kept(xp, system)


def test_to_diagonal_of_a_reduced_system(xp):
    """The use case: re-diagonalise the dense A that balanced truncation leaves."""
    reduced = cc.balanced_truncation(state_space(xp, *fixed_dense_systems()[1]), rank=3).system
    check_transfer_function_kept(xp, numpy_system(reduced))


# --- real output: real_output_system and to_diagonal(real_output=True) ------------------------


def lru_like(seed, n=4, batch=()) -> Diagonal:
    """A complex diagonal system with real D, read as u -> Re(C x) + D u (the LRU's map)."""
    return make_diagonal(
        np.random.default_rng(seed), n, 2, 3, batch=batch, with_d=True, real_d=True
    )


def real_response(system: Diagonal, u) -> np.ndarray:
    """Re(C x) + D u for real inputs u, by brute-force simulation."""
    y = simulate_diagonal(system.poles, system.B, system.C, None, u)
    return y.real + u @ system.D.T


def check_real_output_system(xp, system: Diagonal):
    rsys = cc.real_output_system(diagonal_state_space(xp, *system))
    assert rsys.n == 2 * system.poles.shape[-1]
    u = np.random.default_rng(0).standard_normal((40, system.B.shape[-1]))
    for (_, doubled), (_, original) in zip(
        numpy_system(rsys).members(), system.members(), strict=True
    ):
        np.testing.assert_allclose(
            simulate_diagonal(*doubled, u), real_response(original, u), atol=1e-12
        )


def test_real_output_system_reproduces_the_real_output(xp):
    check_real_output_system(xp, lru_like(1, batch=(2,)))


@eager_only
@given(seed=seeds, n=st.integers(1, 8))
@CORE
def test_real_output_system_has_the_hsv_of_the_real_realisation(xp, seed, n):
    system = lru_like(seed, n)
    check_real_output_system(xp, system)
    hsv = to_np(cc.hankel_singular_values(cc.real_output_system(diagonal_state_space(xp, *system))))
    oracle = control_hsv(*real_output_realisation(*system[:3]))
    np.testing.assert_allclose(hsv, oracle, rtol=1e-8, atol=1e-10 * oracle[0])


def count_conjugate_pairs(A) -> int:
    eigenvalues = np.linalg.eigvals(A)
    return int(np.sum(eigenvalues.imag > 1e-6 * np.abs(eigenvalues).max()))


def check_merged_real_output(xp, system: Diagonal, rank):
    """Balance the real map, keep ``rank`` states, merge conjugate pairs: the merged model's
    Re(C x) + D u is the reduced model's output, with about half the states, and stays within
    the H-infinity bound of the original LRU output (l2 gain, zero initial state)."""
    reduction = cc.balanced_truncation(
        cc.real_output_system(diagonal_state_space(xp, *system)), rank=rank
    )
    merged = cc.to_diagonal(reduction.system, real_output=True)
    reduced = numpy_system(reduction.system)
    assert merged.n == rank - count_conjugate_pairs(reduced.A)
    assert merged.n >= (rank + 1) // 2
    u = np.random.default_rng(1).standard_normal((60, system.B.shape[-1]))
    y_reduced = simulate(*reduced, u)
    y_merged = real_response(numpy_system(merged), u)
    scale = np.abs(y_reduced).max()
    np.testing.assert_allclose(y_reduced.imag, 0, atol=1e-9 * scale)
    np.testing.assert_allclose(y_merged, y_reduced.real, atol=1e-9 * scale)
    error = np.linalg.norm(real_response(system, u) - y_merged)
    assert error <= float(reduction.error_bound) * np.linalg.norm(u) * (1 + 1e-8) + 1e-9 * scale


@eager_only
@given(seed=seeds, n=st.integers(2, 8), data=st.data())
@CORE_SLOW
def test_merged_real_output_model(xp, seed, n, data):
    system = lru_like(seed, n)
    hsv = control_hsv(*real_output_realisation(*system[:3]))
    ranks = [r for r in range(1, 2 * n) if hsv[r - 1] - hsv[r] > 1e-3 * hsv[0]]
    assume(ranks)
    check_merged_real_output(xp, system, data.draw(st.sampled_from(ranks)))


def test_merged_real_output_model_on_a_fixed_system(xp):
    check_merged_real_output(xp, lru_like(5, n=5), rank=4)


def test_real_system_merges_its_conjugate_pairs(xp):
    """2 conjugate pairs and 1 real pole: 3 states, whose Re(C x) + D u is the real output."""
    rng = np.random.default_rng(3)
    blocks = scipy.linalg.block_diag([[0.5, -0.4], [0.4, 0.5]], [[-0.3, -0.6], [0.6, -0.3]], 0.7)
    T = well_conditioned(rng, 5, is_complex=False)
    A = T @ blocks @ np.linalg.inv(T)  # eigenvalues 0.5 +- 0.4j, -0.3 +- 0.6j, 0.7
    system = Dense(
        A, rng.standard_normal((5, 2)), rng.standard_normal((3, 5)), rng.standard_normal((3, 2))
    )
    merged = cc.to_diagonal(state_space(xp, *system), real_output=True)
    assert merged.n == 3
    u = rng.standard_normal((30, 2))
    np.testing.assert_allclose(
        real_response(numpy_system(merged), u), simulate(*system, u), atol=1e-10
    )


def test_unpaired_complex_pole_is_rejected(xp):
    system = Dense(np.diag([0.5 + 0.3j, 0.2, -0.4 + 0j]), np.ones((3, 1)), np.ones((1, 3)), None)
    with pytest.raises(ValueError, match="conjugate pairs"):
        cc.to_diagonal(state_space(xp, *system), real_output=True)


def test_batch_members_with_different_pair_counts_are_rejected(xp):
    A = np.stack([np.diag([0.5 + 0.3j, 0.5 - 0.3j]), np.diag([0.5, 0.3])])
    with pytest.raises(ValueError, match="different numbers of conjugate pairs"):
        cc.to_diagonal(state_space(xp, A, np.ones((2, 2, 1)), np.ones((2, 1, 2))), real_output=True)
